//! A PostgreSQL primary with a synchronous streaming standby, private to one test, from
//! the same binaries as the test run's cluster (`PG_BIN`), on loopback ports.
//!
//! The primary waits for the standby to have flushed each commit before it answers
//! (`synchronous_standby_names = '*'`, `synchronous_commit = on`), so what a client was
//! told is committed survives the primary's loss. [`PgPair::kill_primary`] stops it
//! outright (`immediate`: no shutdown checkpoint, like a crash); [`PgPair::promote`] makes
//! the standby the primary (then without a synchronous standby of its own, or its commits
//! would wait for one that does not exist).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::process::free_port;

/// The OS user PostgreSQL runs as when the tests run as root (it refuses root).
fn os_user() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return None;
    }
    if let Ok(user) = std::env::var("LATCH_PG_OS_USER") {
        return Some(user);
    }
    let postgres = Command::new("id").args(["-u", "postgres"]).output().ok()?;
    Some(
        if postgres.status.success() {
            "postgres"
        } else {
            "latch-pg"
        }
        .to_owned(),
    )
}

pub struct PgPair {
    dir: tempfile::TempDir,
    os_user: Option<String>,
    pub primary_port: u16,
    pub standby_port: u16,
}

/// The superuser `initdb` makes.
pub const SUPERUSER: &str = "latch";

impl PgPair {
    /// Makes and starts both servers, and waits until the standby streams synchronously.
    pub fn start() -> PgPair {
        let dir = tempfile::Builder::new()
            .prefix("latch-pgpair-")
            .tempdir()
            .unwrap();
        let pair = PgPair {
            os_user: os_user(),
            primary_port: free_port(),
            standby_port: free_port(),
            dir,
        };
        if let Some(user) = &pair.os_user {
            pair.run(
                Command::new("chown")
                    .arg(format!("{user}:"))
                    .arg(pair.dir.path()),
            );
        }
        let primary = pair.data("primary");
        pair.pg("initdb", |c| {
            c.arg("-D").arg(&primary).args([
                "--auth=trust",
                "--username",
                SUPERUSER,
                "--no-locale",
                "-E",
                "UTF8",
            ]);
        });
        append(
            &primary.join("postgresql.conf"),
            &format!(
                "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
                 wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\n\
                 synchronous_standby_names = '*'\nsynchronous_commit = on\n\
                 max_connections = 100\nshared_buffers = 32MB\n",
                pair.primary_port,
                pair.dir.path().display()
            ),
        );
        pair.start_node("primary");
        let standby = pair.data("standby");
        pair.pg("pg_basebackup", |c| {
            c.args(["-h", "127.0.0.1", "-p", &pair.primary_port.to_string()])
                .args(["-U", SUPERUSER, "-X", "stream", "-c", "fast", "-R", "-D"])
                .arg(&standby);
        });
        append(
            &standby.join("postgresql.conf"),
            &format!(
                "port = {}\nsynchronous_standby_names = ''\n",
                pair.standby_port
            ),
        );
        pair.start_node("standby");
        pair
    }

    /// Both servers, primary first: `127.0.0.1:<p>,127.0.0.1:<s>`.
    pub fn hosts(&self) -> String {
        format!(
            "127.0.0.1:{},127.0.0.1:{}",
            self.primary_port, self.standby_port
        )
    }

    /// Stops the primary outright (no checkpoint, clients cut off), as a crash would.
    pub fn kill_primary(&self) {
        self.pg("pg_ctl", |c| {
            c.arg("-D")
                .arg(self.data("primary"))
                .args(["stop", "-m", "immediate", "-w"]);
        });
    }

    /// Promotes the standby to primary and waits until it accepts writes.
    pub fn promote(&self) {
        self.pg("pg_ctl", |c| {
            c.arg("-D")
                .arg(self.data("standby"))
                .args(["promote", "-w"]);
        });
    }

    fn data(&self, node: &str) -> PathBuf {
        self.dir.path().join(node)
    }

    fn start_node(&self, node: &str) {
        let log = self.dir.path().join(format!("{node}.log"));
        self.pg("pg_ctl", |c| {
            c.arg("-D")
                .arg(self.data(node))
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "start"]);
        });
    }

    /// Runs PostgreSQL's `bin` (from `PG_BIN`) as its OS user.
    fn pg(&self, bin: &str, args: impl FnOnce(&mut Command)) {
        let mut command = pg_command(&self.os_user, bin);
        args(&mut command);
        self.run(&mut command);
    }

    /// Whether the primary has a standby streaming synchronously.
    pub async fn synchronous(&self) -> bool {
        let url = format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/postgres",
            self.primary_port
        );
        let Ok(client) = latch_core::db::connect(&latch_core::config::Secret::new(url)).await
        else {
            return false;
        };
        client
            .query_opt(
                "SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync' AND state = 'streaming'",
                &[],
            )
            .await
            .is_ok_and(|row| row.is_some())
    }

    fn run(&self, command: &mut Command) {
        let output = command
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{command:?}: {e}"));
        assert!(
            output.status.success(),
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for PgPair {
    fn drop(&mut self) {
        for node in ["standby", "primary"] {
            let data = self.data(node);
            if data.join("postmaster.pid").exists() {
                let _ = pg_command(&self.os_user, "pg_ctl")
                    .arg("-D")
                    .arg(&data)
                    .args(["stop", "-m", "immediate"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// `bin` from `PG_BIN`, run as `os_user` if there is one.
fn pg_command(os_user: &Option<String>, bin: &str) -> Command {
    let pg_bin = std::env::var("PG_BIN")
        .unwrap_or_else(|_| panic!("PG_BIN is not set: run the tests with ./deploy/local/test.sh"));
    let path = Path::new(&pg_bin).join(bin);
    let mut command = match os_user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(&path);
            c
        }
        None => Command::new(&path),
    };
    command.current_dir("/");
    command
}

fn append(file: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(file).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}
