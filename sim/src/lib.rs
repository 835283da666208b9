//! tanium-sim: a stateful Tanium API Gateway simulator.
