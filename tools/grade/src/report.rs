//! The report: one line per check, a score per stage, and the totals; as text for people and
//! as JSON for programs.

use std::fmt::Write as _;

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

/// One check's line.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub name: String,
    pub stage: u8,
    pub points: u32,
    pub teaches: String,
    pub outcome: Outcome,
    /// Seconds it took.
    pub seconds: f64,
}

/// What a run found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The stage graded (its checks and every earlier stage's).
    pub stage: u8,
    /// What was graded, in words.
    pub target: String,
    pub results: Vec<CheckResult>,
    /// Things said once: the program did not start, exited, panicked.
    pub notes: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Pass))
    }

    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Fail(_)))
    }

    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skip(_)))
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|r| f(&r.outcome)).count()
    }

    /// True when no check failed (skipped checks are reported, not failed).
    pub fn success(&self) -> bool {
        self.failed() == 0 && self.passed() > 0
    }

    /// The result of check `name`.
    pub fn outcome(&self, name: &str) -> Option<&Outcome> {
        self.results
            .iter()
            .find(|r| r.name == name)
            .map(|r| &r.outcome)
    }

    /// The names of the checks that failed, in order.
    pub fn failed_names(&self) -> Vec<&str> {
        self.results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Fail(_)))
            .map(|r| r.name.as_str())
            .collect()
    }

    /// Points earned and possible for `stage`.
    pub fn score(&self, stage: u8) -> (u32, u32) {
        let of_stage = self.results.iter().filter(|r| r.stage == stage);
        let possible = of_stage
            .clone()
            .filter(|r| !matches!(r.outcome, Outcome::Skip(_)))
            .map(|r| r.points)
            .sum();
        let earned = of_stage
            .filter(|r| r.outcome == Outcome::Pass)
            .map(|r| r.points)
            .sum();
        (earned, possible)
    }

    /// The report for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "grade: stage {} checks against {}",
            self.stage, self.target
        );
        for note in &self.notes {
            let _ = writeln!(out, "NOTE  {note}");
        }
        let width = self.results.iter().map(|r| r.name.len()).max().unwrap_or(0);
        for r in &self.results {
            let (word, reason) = match &r.outcome {
                Outcome::Pass => ("PASS", None),
                Outcome::Fail(why) => ("FAIL", Some(why)),
                Outcome::Skip(why) => ("SKIP", Some(why)),
            };
            if let Some(reason) = reason.filter(|r| r.starts_with("not run")) {
                // Said once in a NOTE above; one line each is enough.
                let _ = writeln!(
                    out,
                    "{word}  {:width$}  stage {}  {reason}",
                    r.name, r.stage
                );
                continue;
            }
            let _ = writeln!(out, "{word}  {:width$}  stage {}", r.name, r.stage);
            if let Some(reason) = reason {
                let _ = writeln!(out, "      {reason}");
                if word == "FAIL" {
                    let _ = writeln!(out, "      see {}", r.teaches);
                }
            }
        }
        let mut stages: Vec<u8> = self.results.iter().map(|r| r.stage).collect();
        stages.dedup();
        for stage in stages {
            let (earned, possible) = self.score(stage);
            let _ = writeln!(out, "stage {stage}: {earned}/{possible} points");
        }
        let skipped = self.skipped();
        let skipped = if skipped > 0 {
            format!(", {skipped} skipped")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{} passed, {} failed{skipped}",
            self.passed(),
            self.failed()
        );
        out
    }

    /// The report for programs.
    pub fn json(&self) -> serde_json::Value {
        let checks: Vec<serde_json::Value> = self
            .results
            .iter()
            .map(|r| {
                let (outcome, reason) = match &r.outcome {
                    Outcome::Pass => ("pass", None),
                    Outcome::Fail(why) => ("fail", Some(why.clone())),
                    Outcome::Skip(why) => ("skip", Some(why.clone())),
                };
                serde_json::json!({
                    "name": r.name,
                    "stage": r.stage,
                    "points": r.points,
                    "outcome": outcome,
                    "reason": reason,
                    "teaches": r.teaches,
                    "seconds": (r.seconds * 1000.0).round() / 1000.0,
                })
            })
            .collect();
        let mut stages: Vec<u8> = self.results.iter().map(|r| r.stage).collect();
        stages.dedup();
        let scores: Vec<serde_json::Value> = stages
            .into_iter()
            .map(|s| {
                let (earned, possible) = self.score(s);
                serde_json::json!({ "stage": s, "earned": earned, "possible": possible })
            })
            .collect();
        serde_json::json!({
            "stage": self.stage,
            "target": self.target,
            "notes": self.notes,
            "checks": checks,
            "scores": scores,
            "passed": self.passed(),
            "failed": self.failed(),
            "skipped": self.skipped(),
        })
    }
}
