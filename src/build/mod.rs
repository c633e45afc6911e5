//! Build orchestration: runs a plan stage by stage.
