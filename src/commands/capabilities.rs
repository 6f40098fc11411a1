//! `warden capabilities`: the capability table the host links from, and the names `--grant`
//! accepts; as Markdown for docs/capabilities.md.

use crate::failure::Failure;
use crate::output::out;
use warden_host::CAPABILITIES;

#[derive(clap::Args)]
pub(crate) struct CapabilitiesArgs {
    /// Print the table as Markdown (docs/capabilities.md holds this output).
    #[arg(long)]
    markdown: bool,
}

pub(crate) fn execute(args: CapabilitiesArgs) -> Result<(), Failure> {
    out(&if args.markdown {
        capability_markdown()
    } else {
        capability_list()
    });
    Ok(())
}

fn capability_list() -> String {
    let mut text = String::new();
    for info in CAPABILITIES {
        text += &format!(
            "{:#07x}  {:<16} {}\n",
            info.bit.bits(),
            info.name,
            info.summary
        );
    }
    text + &format!("sets: {}\n", compound_list())
}

fn compound_list() -> String {
    let sets: Vec<String> = warden_host::capability::COMPOUNDS
        .iter()
        .map(|(name, set)| format!("{name} = {set}"))
        .collect();
    sets.join("; ")
}

/// The capability table as Markdown, generated from the same table the host links from.
pub(crate) fn capability_markdown() -> String {
    let mut text =
        String::from("| bit | name | world | imports | grants |\n|---|---|---|---|---|\n");
    for info in CAPABILITIES {
        let imports: Vec<String> = info
            .interfaces
            .iter()
            .map(|interface| format!("`{interface}`"))
            .collect();
        text += &format!(
            "| {:#x} | `{}` | `{}` | {} | {} |\n",
            info.bit.bits(),
            info.name,
            info.world,
            imports.join(", "),
            info.summary
        );
    }
    text + &format!("\nSets: {}.\n", compound_list())
}
