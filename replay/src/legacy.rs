//! The JSON report models a replay with `--until` used to write (`<name>@<until>` rows of the
//! checkpoint store), read back for `closeloop report NAME --replayed UNTIL` while `report`
//! still reads those models. Replay now builds tables (`rebuild.rs`, read back with
//! [`open_replayed`](crate::rebuild::open_replayed)) and writes no such rows any more, so
//! this finds only what an older build wrote; it goes away with the models.

use std::sync::{Arc, RwLock};

use closeloop_projections::models::ReadModels;
use closeloop_projections::performance::PerformanceModel;
use closeloop_projections::report::ScoreWeights;
use closeloop_projections::runtime::{Projection, Status};
use closeloop_projections::satisfaction::SatisfactionModel;
use closeloop_projections::sla::SlaModel;
use closeloop_projections::store::CheckpointStore;

use crate::rebuild::Until;
use crate::Error;

fn load_model<P: Projection>(
    name: &str,
    checkpoint: Option<closeloop_projections::store::Checkpoint>,
) -> Result<(Arc<RwLock<P>>, Arc<Status>), Error> {
    let c = checkpoint.ok_or_else(|| Error::NotReplayed(name.to_owned()))?;
    if c.version != P::VERSION {
        return Err(Error::NotReplayed(format!(
            "{name} (saved at projection version {}, this build folds version {}: replay again)",
            c.version,
            P::VERSION
        )));
    }
    let mut model: P =
        serde_json::from_str(&c.state).map_err(|e| Error::Corrupt(format!("{name}: {e}")))?;
    model
        .restored()
        .map_err(|e| Error::Corrupt(format!("{name}: {e}")))?;
    Ok((
        Arc::new(RwLock::new(model)),
        Arc::new(Status::fixed(P::NAME, P::VERSION, c.position)),
    ))
}

/// The read models a replay with `--until until` wrote (`<name>@<until>`), as saved: for
/// `closeloop report NAME --replayed UNTIL`. Every report model must have been replayed
/// (`closeloop replay all --until UNTIL`).
pub async fn load_models(store: &dyn CheckpointStore, until: Until) -> Result<ReadModels, Error> {
    let sla_name = format!("{}@{until}", SlaModel::NAME);
    let sat_name = format!("{}@{until}", SatisfactionModel::NAME);
    let perf_name = format!("{}@{until}", PerformanceModel::NAME);
    let (sla, s1) = load_model::<SlaModel>(&sla_name, store.load(&sla_name).await?)?;
    let (satisfaction, s2) =
        load_model::<SatisfactionModel>(&sat_name, store.load(&sat_name).await?)?;
    let (performance, s3) =
        load_model::<PerformanceModel>(&perf_name, store.load(&perf_name).await?)?;
    Ok(ReadModels {
        sla,
        satisfaction,
        performance,
        statuses: vec![s1, s2, s3],
        weights: ScoreWeights::default(),
    })
}
