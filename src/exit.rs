//! Every exit code iocd uses, in one place (BSD `sysexits.h` values, which
//! systemd and shell scripts know).

use std::process::ExitCode;

/// Why iocd exits. A closed set: each variant is one documented code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0: done.
    Success,
    /// 2: the command line is wrong (clap's own code).
    Usage,
    /// 65 (EX_DATAERR): feed data unreadable at start, or no engine built.
    DataErr,
    /// 66 (EX_NOINPUT): a log file to scan cannot be read.
    NoInput,
    /// 69 (EX_UNAVAILABLE): `check --connect` could not reach a broker,
    /// or found a topic or stream missing.
    Unavailable,
    /// 70 (EX_SOFTWARE): draining took longer than the grace period.
    Software,
    /// 71 (EX_OSERR): a socket, file or runtime cannot be opened.
    OsErr,
    /// 74 (EX_IOERR): hits cannot be written.
    IoErr,
    /// 78 (EX_CONFIG): the configuration is invalid.
    Config,
}

impl Exit {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Usage => 2,
            Exit::DataErr => 65,
            Exit::NoInput => 66,
            Exit::Unavailable => 69,
            Exit::Software => 70,
            Exit::OsErr => 71,
            Exit::IoErr => 74,
            Exit::Config => 78,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}
