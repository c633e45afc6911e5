//! Text output of the image commands (`images`, `inspect`, `history`, `rmi`, `prune`, `df`) as
//! the docker CLI prints it: tables, `--format` templates, human sizes. The store returns data;
//! only this module formats it.

pub mod format;
pub mod gc;
pub mod history;
pub mod images;
pub mod table;

pub use gc::{df, prune, prune_snapshots, rmi};
pub use history::{history, history_with, HistoryOptions};
pub use images::{images, inspect, GraphDirs, ImagesOptions};
pub use table::{human_duration, human_size};
