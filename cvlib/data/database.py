"""Database sources: a table or query of a PostgreSQL database, read into a DataFrame.

The driver is ADBC (``adbc-driver-postgresql``: libpq, COPY in binary format, Arrow out), picked
as the fastest of ADBC, connectorx and psycopg on a million order lines with the least memory
(``benchmarks/database.py``, docs/benchmarks.md). It is imported where a database is read, so
that ``import cvlib`` and the CLI start-up never load it.

The result streams in Arrow batches of about :data:`BATCH_BYTES` into a parquet file in a temporary
folder, then that file is read: while the server sends, memory holds one batch, not the whole
result twice (driver buffers plus Arrow table).

The password comes from the environment (the URL in the variable ``url_env`` names, or libpq's
``PGPASSWORD`` / ``~/.pgpass``). Anything shown or recorded uses :func:`redact`, and every driver
message passes :func:`scrub` before it reaches an error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import tempfile
import urllib.parse
from pathlib import Path

import pandas as pd

from cvlib.config import SQL_SCHEMES, SqlSource

# Arrow batches of about this size stream from the server (the read's memory bound).
BATCH_BYTES = 16 << 20
# How much of a query a message or the run record shows.
QUERY_SHOWN = 80


class SourceError(ValueError):
  """A database source that cannot be read; the message is one line, without the password."""


@dataclasses.dataclass(frozen=True)
class Read:
  """A database source as read: the rows, and what run.json records about them."""
  frame: pd.DataFrame
  source: dict  # {"path": redacted URL and table/query, "sha256", "bytes", "rows"}


def connection_url(sql: SqlSource) -> str:
  """The URL to connect with: the environment variable's value, or the params' URL.

  Raises:
    SourceError: the variable is unset or empty, or does not hold a postgresql:// URL.
  """
  if sql.url_env is None:
    return sql.url
  url = os.environ.get(sql.url_env, "").strip()
  if not url:
    raise SourceError(f"environment variable {sql.url_env} is not set (it should hold the "
                      "connection URL, postgresql://user:password@host:port/database)")
  if urllib.parse.urlsplit(url).scheme not in SQL_SCHEMES:  # not echoed: it may hold a password
    raise SourceError(f"environment variable {sql.url_env} does not hold a postgresql:// URL")
  return url


def redact(url: str) -> str:
  """The URL without its password and query string: ``postgresql://user@host:port/db``."""
  parts = urllib.parse.urlsplit(url)
  host = parts.hostname or ""
  if ":" in host:
    host = f"[{host}]"
  try:
    port = f":{parts.port}" if parts.port else ""
  except ValueError:
    port = ""
  user = f"{urllib.parse.unquote(parts.username)}@" if parts.username else ""
  return urllib.parse.urlunsplit((parts.scheme, user + host + port, parts.path, "", ""))


def secrets_of(url: str) -> list[str]:
  """The strings of ``url`` that must never be shown: its password, as written and decoded."""
  parts = urllib.parse.urlsplit(url)
  found = [parts.password] if parts.password else []
  found += urllib.parse.parse_qs(parts.query).get("password", [])
  found += [urllib.parse.unquote(s) for s in found]
  found += [os.environ["PGPASSWORD"]] if os.environ.get("PGPASSWORD") else []
  return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
  """``text`` on one line, with the URL shown redacted and every secret of it replaced."""
  text = text.replace(url, redact(url))
  for secret in secrets_of(url):
    text = text.replace(secret, "***")
  return " ".join(text.split())


def describe(sql: SqlSource, url: str) -> str:
  """How messages and the run record name the source: redacted URL, then table or query."""
  if sql.table is not None:
    what = f"table {sql.table}"
  else:
    q = " ".join(sql.query.split())
    what = f"query {q[:QUERY_SHOWN]!r}" + ("..." if len(q) > QUERY_SHOWN else "")
  return f"{redact(url)} {what}"


def source_query(sql: SqlSource) -> str:
  if sql.table is not None:  # checked in config: name or schema.name
    return "SELECT * FROM " + ".".join(f'"{part}"' for part in sql.table.split("."))
  return sql.query.strip().rstrip(";")


def read_source(sql: SqlSource, batch_bytes: int = BATCH_BYTES) -> Read:
  """Reads the table or query of ``sql`` in Arrow batches.

  Raises:
    SourceError: the server cannot be reached, refuses the login, the table or a column is
      missing, the query fails, the connection drops mid-read, or nothing comes back.
  """
  url = connection_url(sql)
  with tempfile.TemporaryDirectory(prefix="cvlib-sql-") as tmp:
    path = Path(tmp) / "rows.parquet"
    rows, nbytes, sha = _stream_to_parquet(url, source_query(sql), path, batch_bytes)
    if not rows:
      raise SourceError("no rows: the table or query returned nothing")
    frame = _read_parquet(path)
  return Read(frame, {"path": describe(sql, url), "sha256": sha, "bytes": nbytes, "rows": rows})


def _stream_to_parquet(url: str, query: str, path: Path,
                       batch_bytes: int) -> tuple[int, int, str]:
  """Runs ``query`` and appends each batch to a parquet file; returns rows, bytes, sha256."""
  import adbc_driver_manager
  import adbc_driver_postgresql.dbapi as pg
  import pyarrow as pa
  import pyarrow.parquet as pq

  rows = nbytes = 0
  h = hashlib.sha256()
  writer = None
  try:
    with pg.connect(url) as conn, conn.cursor() as cur:
      cur.adbc_statement.set_options(
          **{"adbc.postgresql.batch_size_hint_bytes": str(batch_bytes)})
      cur.execute(query)
      reader = cur.fetch_record_batch()
      schema = _plain_schema(reader.schema)
      writer = pq.ParquetWriter(path, schema)
      for batch in reader:
        batch = pa.RecordBatch.from_arrays([_plain(c) for c in batch.columns], schema=schema)
        writer.write_batch(batch)
        h.update(batch.serialize())
        rows += batch.num_rows
        nbytes += batch.nbytes
      if rows == 0:
        writer.write_table(schema.empty_table())
  except (adbc_driver_manager.Error, pa.ArrowException, OSError) as e:
    raise SourceError(_problem(e, url)) from None
  finally:
    if writer is not None:
      writer.close()
  return rows, nbytes, h.hexdigest()


def _read_parquet(path: Path) -> pd.DataFrame:
  """The streamed rows as a DataFrame; Arrow's buffers are freed column by column as they convert."""
  import pyarrow.parquet as pq
  return pq.read_table(path).to_pandas(self_destruct=True, split_blocks=True)


def _plain(column):
  """Postgres types Arrow has no type for (numeric, json, ...) come as extension types over
  strings: their strings, which the adapters parse like a file's."""
  import pyarrow as pa
  return column.storage if isinstance(column, pa.ExtensionArray) else column


def _plain_schema(schema):
  import pyarrow as pa
  return pa.schema([pa.field(f.name, f.type.storage_type
                             if isinstance(f.type, pa.BaseExtensionType) else f.type)
                    for f in schema])


# what libpq says, in the user's words
_KINDS = (
    (re.compile(r"password authentication failed|no password supplied", re.I),
     "login refused (wrong user or password)"),
    (re.compile(r"could not translate host name|Connection refused|timeout expired|"
                r"could not connect|No route to host|Network is unreachable", re.I),
     "cannot reach the database server"),
    (re.compile(r'database ".*" does not exist', re.I), "database not found"),
    (re.compile(r'relation ".*" does not exist', re.I), "table not found"),
    (re.compile(r'column ".*" does not exist', re.I), "column not found"),
    (re.compile(r"terminating connection|server closed the connection|connection to server .* "
                r"lost|SSL SYSCALL|no connection to the server|could not receive data", re.I),
     "the connection was lost during the read"),
)


def _problem(e: BaseException, url: str) -> str:
  """One line from a driver error: what went wrong in words, then the server's own message."""
  text = scrub(str(e), url)
  detail = re.search(r"(?:ERROR|FATAL):\s+(.*?)(?:\s+LINE \d+:|\s+Query was:|$)", text)
  if detail:
    said = detail.group(1)
  else:  # libpq's connection errors carry no ERROR: prefix
    said = re.sub(r"^.*?\[libpq\]\s*(Failed to connect:\s*)?", "", text)
    said = re.sub(r"\s+Query was:.*$", "", said)
  said = said.strip().rstrip(".")[:300]
  for pattern, kind in _KINDS:
    if pattern.search(text):
      return f"{kind}: {said}"
  return f"query failed: {said}"
