//! A real SMTP server for the tests: `tests/support/smtp_server.py` (Python's aiosmtpd),
//! started per test on a free port of 127.0.0.1. It needs `python3` (or `$PYTHON`) with
//! `pip install aiosmtpd`; without them the tests that use it fail and say so.
#![allow(dead_code)]

use std::{
    fs,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::Value;

pub const USER: &str = "mailer";
pub const PASSWORD: &str = "s3cret-pass-9";

/// A running `smtp_server.py`, killed when dropped.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl SmtpServer {
    pub fn start() -> SmtpServer {
        SmtpServer::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> SmtpServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let stderr_path = dir.path().join("server.stderr");
        let stderr = fs::File::create(&stderr_path).expect("stderr file");
        let out_dir = dir.path().join("mail");
        fs::create_dir(&out_dir).expect("mail directory");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(&out_dir)
            .arg(USER)
            .arg(PASSWORD)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not start `{python}` ({e}): these tests need Python 3 with aiosmtpd \
                     (`pip install aiosmtpd`); set PYTHON to use another interpreter"
                )
            });

        // The server prints `PORT <n>` once it accepts connections.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line.strip_prefix("PORT ") {
                    let _ = tx.send(port.trim().parse::<u16>().ok());
                    break;
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(port)) => port,
            outcome => {
                let _ = child.kill();
                let _ = child.wait();
                let log = fs::read_to_string(&stderr_path).unwrap_or_default();
                panic!(
                    "the test SMTP server did not start ({outcome:?}). It needs Python 3 with \
                     aiosmtpd: run `pip install aiosmtpd`.\nserver stderr:\n{log}"
                );
            }
        };
        SmtpServer { child, port, dir }
    }

    /// Every message the server accepted so far.
    pub fn received(&self) -> Vec<Value> {
        let mut all = Vec::new();
        for entry in fs::read_dir(self.dir.path().join("mail")).expect("mail directory") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = fs::read_to_string(&path).expect("message file");
                all.push(serde_json::from_str(&text).expect("message JSON"));
            }
        }
        all
    }

    /// The one message the server accepted with this Message-ID.
    pub fn message_with_id(&self, message_id: &str) -> Value {
        let found: Vec<Value> = self
            .received()
            .into_iter()
            .filter(|m| header(m, "Message-ID").as_deref() == Some(message_id))
            .collect();
        assert_eq!(found.len(), 1, "messages with Message-ID {message_id}");
        found.into_iter().next().expect("one message")
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A header of a received message, as Python's parser decoded it.
pub fn header(message: &Value, name: &str) -> Option<String> {
    message["parsed"]["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .and_then(|h| h[1].as_str())
        .map(str::to_owned)
}
