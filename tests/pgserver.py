"""A throwaway PostgreSQL server for the tests and the database benchmark.

``PostgresServer`` runs Debian's ``postgresql`` binaries on a cluster in a temporary folder, on a
free loopback TCP port with password (scram) authentication, and removes it all on ``stop``.
``initdb`` refuses to run as root: as root the cluster belongs to the ``postgres`` system user
that the Debian package creates, and the binaries run as that user (``runuser``).

  server = PostgresServer(password="s3cret").start()
  server.url()  # postgresql://cvlib:s3cret@127.0.0.1:PORT/postgres
  server.stop()
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

USER = "cvlib"  # the cluster's superuser
DATABASE = "postgres"  # the database initdb creates
INSTALL = ("PostgreSQL server binaries not found: install Debian's 'postgresql' package "
           "(apt-get install postgresql; .ci/run does this where it is missing)")


class PostgresMissing(RuntimeError):
  """The PostgreSQL server binaries are not installed."""


def find_bindir() -> Path:
  """The folder of initdb / pg_ctl: ``pg_config --bindir``, else /usr/lib/postgresql/<newest>/bin.

  Raises:
    PostgresMissing: no initdb found, with what to install.
  """
  candidates = []
  if shutil.which("pg_config"):
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
    if out.returncode == 0:
      candidates.append(Path(out.stdout.strip()))
  candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                         key=lambda p: int(Path(p).parent.name)
                                         if Path(p).parent.name.isdigit() else 0, reverse=True)]
  if shutil.which("initdb"):
    candidates.append(Path(shutil.which("initdb")).parent)
  for folder in candidates:
    if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
      return folder
  raise PostgresMissing(INSTALL)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class PostgresServer:
  """One throwaway cluster; ``start`` it, read ``url()``, ``stop`` it."""

  def __init__(self, password: str = "cvlib-test-password"):
    self.password = password
    self.port = free_port()
    self.root: Path | None = None
    self.bindir = find_bindir()
    self._as = []  # the command prefix that runs a binary as the cluster's owner
    if os.geteuid() == 0:
      self._as = ["runuser", "-u", "postgres", "--"]

  def _run(self, *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run(self._as + list(args), capture_output=True, text=True, cwd=self.root)
    if out.returncode:
      log = self.root / "server.log"
      tail = log.read_text()[-2000:] if log.exists() else ""
      raise RuntimeError(f"{Path(args[0]).name} failed ({out.returncode}): {out.stderr.strip()} "
                         f"{out.stdout.strip()[-1000:]}\n{tail}")
    return out

  def start(self) -> PostgresServer:
    self.root = Path(tempfile.mkdtemp(prefix="cvlib-pg-"))
    pwfile = self.root / "pwfile"
    pwfile.write_text(self.password + "\n")
    if self._as:
      shutil.chown(self.root, "postgres", "postgres")
      shutil.chown(pwfile, "postgres", "postgres")
    data = self.root / "data"
    self._run(str(self.bindir / "initdb"), "-D", str(data), "-U", USER, "--pwfile", str(pwfile),
              "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8",
              "--locale=C", "--no-sync")
    pwfile.unlink()
    # fsync off: a throwaway cluster need not survive a crash; the socket stays in the temp folder
    options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=20")
    self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-l", str(self.root / "server.log"),
              "-o", options, "-w", "-t", "60", "start")
    return self

  def url(self, password: str | None = None, database: str = DATABASE, host: str = "127.0.0.1",
          port: int | None = None) -> str:
    """A connection URL (with this server's password unless another is given)."""
    pw = self.password if password is None else password
    return (f"postgresql://{USER}:{quote(pw, safe='')}@{host}:{port or self.port}/{database}")

  def stop(self) -> None:
    if self.root is None:
      return
    data = self.root / "data"
    if (data / "postmaster.pid").exists():
      subprocess.run(self._as + [str(self.bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                 "-w", "stop"], capture_output=True, cwd=self.root)
    shutil.rmtree(self.root, ignore_errors=True)
    self.root = None
