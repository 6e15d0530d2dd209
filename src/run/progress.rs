//! How far a run got, as its checkpoints record it: the rows of the final table known
//! so far and the time spent; and training epochs with a checkpoint after each.

use crate::error::{Error, Result};
use crate::nn::Totals;
use crate::train::{Event, Trainer, TrainerState};
use serde::{Deserialize, Serialize};

/// One line of the final table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub method: String,
    /// Epochs of training behind the result (sampling run + averaging).
    pub epochs: f64,
    pub test_acc: f64,
    pub test_loss: f64,
    pub seconds: f64,
}

/// How far a command got beyond the trainer's own state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The part of the command the trainer state belongs to (`sgd`, `swa-phase`,
    /// `continue`).
    pub phase: String,
    /// Rows of the final table already known.
    pub rows: Vec<Row>,
    /// Wall-clock seconds spent before this checkpoint.
    pub seconds: f64,
    /// Of those, the seconds spent averaging (SWA, TWA) before the SGD run went on.
    pub averaging_seconds: f64,
}

/// Saves a checkpoint: the trainer (at its position) and the command's progress.
pub type SaveCheckpoint<'s> = dyn FnMut(TrainerState, &Progress) -> Result<()> + 's;

/// Train epochs `range` (0-based) of `trainer`'s schedule, evaluating after each and
/// saving a checkpoint with the `progress` of that moment after each; a stop saves
/// one at the step reached. Returns the last epoch's test totals. (The trainer's own
/// [`Trainer::train_epochs`] saves nothing.)
pub async fn train_with_checkpoints(
    trainer: &mut Trainer<'_>,
    range: std::ops::Range<usize>,
    progress: &dyn Fn() -> Progress,
    observer: &mut dyn FnMut(Event),
    mut save: Option<&mut SaveCheckpoint<'_>>,
) -> Result<Totals> {
    if range.is_empty() {
        return trainer.train_epochs(range, observer).await;
    }
    let mut last = Totals::default();
    for epoch in range {
        let trained = trainer.train_epochs(epoch..epoch + 1, observer).await;
        if let (Ok(_) | Err(Error::Stopped), Some(save)) = (&trained, save.as_deref_mut()) {
            save(trainer.save_state().await?, &progress())?;
        }
        last = trained?;
    }
    Ok(last)
}
