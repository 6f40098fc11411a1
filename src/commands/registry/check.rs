//! `warden registry check`: re-verify everything a stopped registry stores: records, files,
//! log and index.

use crate::failure::{Failure, store_failure};
use crate::output::out;
use std::path::PathBuf;
use warden_registry::server::store::{DEFAULT_INDEX_TTL, Store};

#[derive(clap::Args)]
pub(crate) struct CheckArgs {
    #[arg(long, default_value = "warden-registry", value_name = "DIR")]
    data: PathBuf,
}

pub(crate) fn execute(args: CheckArgs) -> Result<(), Failure> {
    let CheckArgs { data } = args;
    let store = Store::open_existing(&data, DEFAULT_INDEX_TTL).map_err(store_failure)?;
    let report = store.check().map_err(store_failure)?;
    out(&format!(
        "{}: intact (redb integrity check {:?}): root version {}, {} versions verified, log of {} entries chains to index version {}\n",
        data.display(),
        report.integrity,
        report.root_version,
        report.versions,
        report.log_entries,
        report.index_version
    ));
    Ok(())
}
