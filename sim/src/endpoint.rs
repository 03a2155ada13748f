//! The two sink endpoints the simulator serves, as a name the faults and the statistics
//! are keyed by.

use serde::{Deserialize, Serialize};

/// One of the simulated sinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /tna/v2/punches`, the legacy time-and-attendance system.
    Legacy,
    /// `POST /webhooks/latch`, a third-party webhook subscriber.
    Webhooks,
}

impl Endpoint {
    pub const ALL: [Endpoint; 2] = [Endpoint::Legacy, Endpoint::Webhooks];

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Legacy => "legacy",
            Endpoint::Webhooks => "webhooks",
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "legacy" => Ok(Endpoint::Legacy),
            "webhooks" => Ok(Endpoint::Webhooks),
            other => Err(format!(
                "unknown endpoint {other:?} (use legacy or webhooks)"
            )),
        }
    }
}
