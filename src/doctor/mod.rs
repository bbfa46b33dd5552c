//! The doctor (`whatsapp-gateway doctor`): checks a real set-up end to end and says, for each
//! problem, what to change where.
//!
//! It owns: the report ([`Check`], [`Outcome`], [`Report`]: a checklist for people, JSON for
//! scripts, the exit status), the checks themselves ([`checks`]: the configuration parses, the
//! secrets that close security holes are set, the configured store answers, and at Meta, for
//! every configured business number, the token (valid, not about to expire, with the WhatsApp
//! permissions), the number (known, in its WABA, its quality rating and messaging limit) and the
//! app's subscription to each WABA, which `--fix` makes; optionally the public webhook URL's
//! handshake) and the command line ([`cli`]).
//!
//! Invariants: a check that cannot run because an earlier one failed is reported as skipped,
//! never as passed; the exit status is 0 only when no check failed (warnings allowed); no secret
//! of the configuration (tokens, app secret, API key, verify token, Redis URL) appears in any
//! output: besides never being put into a text, every text is scrubbed of them before printing
//! ([`Report::scrub`]). The doctor starts no server; the only writes it makes are the store's
//! own readiness write and, with `--fix`, the subscriptions.

pub mod checks;
pub mod cli;

use serde::Serialize;

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// In order.
    Pass,
    /// Works now, but needs attention (a token about to expire, a low quality rating).
    Warn,
    /// Broken: the fix says what to do. Fails the command.
    Fail,
    /// Not checked, because something it depends on failed (the detail says what).
    Skipped,
}

impl Outcome {
    /// The checklist mark.
    pub fn mark(self) -> &'static str {
        match self {
            Self::Pass => "✓",
            Self::Warn => "!",
            Self::Fail => "✗",
            Self::Skipped => "-",
        }
    }
}

/// One line of the checklist.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// A stable identifier of the kind of check (`access_token`, `subscription`, ...).
    pub key: &'static str,
    /// What it is about when there are several (a phone_number_id, a WABA id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The title people read (`access token of 106540352242922`).
    pub name: String,
    pub outcome: Outcome,
    /// What was found.
    pub detail: String,
    /// What to do about it (failures always have one, warnings usually).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn new(key: &'static str, name: impl Into<String>, outcome: Outcome, detail: String) -> Self {
        Self {
            key,
            subject: None,
            name: name.into(),
            outcome,
            detail,
            fix: None,
        }
    }

    pub fn pass(key: &'static str, name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(key, name, Outcome::Pass, detail.into())
    }

    pub fn warn(
        key: &'static str,
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(key, name, Outcome::Warn, detail.into()).with_fix(fix)
    }

    pub fn fail(
        key: &'static str,
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(key, name, Outcome::Fail, detail.into()).with_fix(fix)
    }

    /// Not run because `because` (an earlier failure).
    pub fn skipped(key: &'static str, name: impl Into<String>, because: impl Into<String>) -> Self {
        Self::new(key, name, Outcome::Skipped, because.into())
    }

    #[must_use]
    pub fn about(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    #[must_use]
    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// Every check, in the order they ran.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub fn push(&mut self, check: Check) {
        self.checks.push(check);
    }

    /// No check failed (warnings and skipped checks allowed: a skipped check always follows a
    /// failed one).
    pub fn ok(&self) -> bool {
        !self.checks.iter().any(|c| c.outcome == Outcome::Fail)
    }

    fn count(&self, outcome: Outcome) -> usize {
        self.checks.iter().filter(|c| c.outcome == outcome).count()
    }

    /// Replaces every occurrence of each secret (at least 4 characters; shorter ones would
    /// mangle ordinary words and reveal next to nothing) in every text with `(hidden)`. The texts
    /// are built without secrets; this is the second line of defence against an answer that
    /// echoes one (a proxy's error page quoting the URL, a Redis error quoting its address).
    pub fn scrub(&mut self, secrets: &[String]) {
        let mut secrets: Vec<&str> = secrets
            .iter()
            .map(|s| s.trim())
            .filter(|s| s.chars().count() >= 4)
            .collect();
        // The longest first, so a secret containing another is hidden whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let clean = |text: &mut String| {
            for secret in &secrets {
                if text.contains(secret) {
                    *text = text.replace(secret, "(hidden)");
                }
            }
        };
        for check in &mut self.checks {
            clean(&mut check.name);
            clean(&mut check.detail);
            if let Some(subject) = &mut check.subject {
                clean(subject);
            }
            if let Some(fix) = &mut check.fix {
                clean(fix);
            }
        }
    }

    /// The checklist: a mark and a title per check, what was found after a colon, the fix
    /// indented below; then the counts and what to do next.
    pub fn human(&self) -> String {
        let mut out = String::new();
        for check in &self.checks {
            out.push_str(&format!(
                "{} {}: {}\n",
                check.outcome.mark(),
                check.name,
                check.detail
            ));
            if let Some(fix) = &check.fix {
                let mut lines = fix.lines();
                if let Some(first) = lines.next() {
                    out.push_str(&format!("    fix: {first}\n"));
                }
                for line in lines {
                    out.push_str(&format!("         {line}\n"));
                }
            }
        }
        let (failed, warned, passed, skipped) = (
            self.count(Outcome::Fail),
            self.count(Outcome::Warn),
            self.count(Outcome::Pass),
            self.count(Outcome::Skipped),
        );
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        out.push_str(&format!(
            "\n{}, {}, {}, {}\n",
            plural(passed, "passed", "passed"),
            plural(warned, "warning", "warnings"),
            plural(failed, "failed", "failed"),
            plural(skipped, "skipped", "skipped"),
        ));
        out.push_str(if failed > 0 {
            "Fix the ✗ items (each says how), then run `whatsapp-gateway doctor` again.\n"
        } else if warned > 0 {
            "Nothing is broken; the ! items need attention.\n"
        } else {
            "Everything checked is in order.\n"
        });
        out
    }

    /// `{"ok": bool, "checks": [{key, subject?, name, outcome, detail, fix?}]}`, pretty-printed,
    /// fields in that order.
    pub fn json(&self) -> String {
        #[derive(Serialize)]
        struct Json<'a> {
            ok: bool,
            checks: &'a [Check],
        }
        serde_json::to_string_pretty(&Json {
            ok: self.ok(),
            checks: &self.checks,
        })
        .expect("strings and enums serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let mut r = Report::default();
        r.push(Check::pass("store", "store", "answers"));
        r.push(
            Check::warn(
                "access_token",
                "access token of 1",
                "expires soon",
                "renew it\nthen restart",
            )
            .about("1"),
        );
        r
    }

    #[test]
    fn only_a_failure_fails_the_report() {
        let mut r = report();
        r.push(Check::skipped("x", "x", "because"));
        assert!(r.ok());
        r.push(Check::fail("y", "y", "broken", "do this"));
        assert!(!r.ok());
        let text = r.json();
        assert!(
            text.starts_with("{\n  \"ok\": false,\n  \"checks\": ["),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["checks"][1]["outcome"], "warn");
        assert_eq!(json["checks"][1]["subject"], "1");
        assert_eq!(json["checks"][2]["outcome"], "skipped");
        assert!(json["checks"][0].get("fix").is_none());
    }

    #[test]
    fn the_checklist_marks_each_check_and_indents_the_fix() {
        let text = report().human();
        assert!(text.starts_with("✓ store: answers\n! access token of 1: expires soon\n"));
        assert!(
            text.contains("    fix: renew it\n         then restart\n"),
            "{text}"
        );
        assert!(
            text.contains("1 passed, 1 warning, 0 failed, 0 skipped"),
            "{text}"
        );
    }

    #[test]
    fn scrubbing_hides_every_secret_longest_first() {
        let mut r = Report::default();
        r.push(Check::fail(
            "t",
            "t",
            "Meta said: token EAAG-secret-xyz is bad; redis://:pw-long@host",
            "not EAAG-secret-xyz",
        ));
        r.scrub(&[
            "EAAG-secret".into(),
            "EAAG-secret-xyz".into(),
            "pw-long".into(),
            "ab".into(),
        ]);
        let text = r.human();
        assert!(
            !text.contains("EAAG") && !text.contains("pw-long"),
            "{text}"
        );
        assert!(text.contains("token (hidden) is bad"), "{text}");
        // Too short to scrub: "ab" stays in "table"-like words.
        let mut r = Report::default();
        r.push(Check::pass("t", "t", "about"));
        r.scrub(&["ab".into()]);
        assert_eq!(r.checks[0].detail, "about");
    }
}
