"""What every layer shares: `units` (sizes, bytes of a tensor, quantities), `measurements` (the plain data a
probe produces: ProbeResult, DeviceInfo, ProbeOutcome), `version` (from the package's metadata).
May import nothing of preflight but preflight.errors."""
