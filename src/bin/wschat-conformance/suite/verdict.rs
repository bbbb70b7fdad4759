//! The four verdicts and the rules that give them (written down for users
//! in docs/08-testing.md, next to Autobahn's).

use std::fmt;

/// What a case concludes about the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// Did what the RFC requires, the strict way where it leaves a choice.
    Pass,
    /// A SHOULD not followed, or a choice the RFC leaves open made the
    /// other way (a limit below the case's size, failing before echoing
    /// what came first, a code other than the one the RFC names).
    NonStrict,
    /// The RFC says nothing that decides the case: the reason says what
    /// the server did. A broken MUST still makes such a case fail.
    Informational,
    /// A MUST broken, or no answer at all.
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::NonStrict => "non-strict",
            Verdict::Informational => "informational",
            Verdict::Fail => "fail",
        }
    }

    pub fn parse(s: &str) -> Option<Verdict> {
        [
            Verdict::Pass,
            Verdict::NonStrict,
            Verdict::Informational,
            Verdict::Fail,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a case did not simply pass: a verdict and a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub verdict: Verdict,
    pub reason: String,
}

impl Finding {
    pub fn fail(reason: impl Into<String>) -> Finding {
        Finding {
            verdict: Verdict::Fail,
            reason: reason.into(),
        }
    }

    pub fn non_strict(reason: impl Into<String>) -> Finding {
        Finding {
            verdict: Verdict::NonStrict,
            reason: reason.into(),
        }
    }

    pub fn informational(reason: impl Into<String>) -> Finding {
        Finding {
            verdict: Verdict::Informational,
            reason: reason.into(),
        }
    }

    pub fn prefixed(self, prefix: &str) -> Finding {
        Finding {
            reason: format!("{prefix}{}", self.reason),
            ..self
        }
    }
}

/// Plain error strings are MUSTs broken.
impl From<String> for Finding {
    fn from(reason: String) -> Finding {
        Finding::fail(reason)
    }
}

impl From<&str> for Finding {
    fn from(reason: &str) -> Finding {
        Finding::fail(reason)
    }
}

/// What a case returns: `Ok` passes (the reason comes from the
/// transcript), `Err` carries any other verdict.
pub type Check = Result<(), Finding>;

/// `Ok` if `condition`, else a failure with `what`.
pub fn ensure(condition: bool, what: impl FnOnce() -> String) -> Check {
    if condition {
        Ok(())
    } else {
        Err(Finding::fail(what()))
    }
}
