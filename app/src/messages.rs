//! `courier messages CONVERSATION --as USER`: the history of a conversation as a
//! member sees it, oldest first, from the configured inbox views.

use std::process::ExitCode;

use crate::config::Config;
use courier_processors::inbox::NotAMember;
use courier_processors::inbox::store;

use crate::views::open_views;

/// Arguments of `messages`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The conversation.
    conversation: String,
    /// Whose view: only messages sent while they were a member are shown.
    #[arg(long = "as", value_name = "USER")]
    as_user: String,
    /// Print a JSON array of `{message_id, sender_id, text, sent_at_ms, edited,
    /// deleted, delivered_to, read_by}` (plus `ciphertext` or `media` on messages
    /// that carry them).
    #[arg(long)]
    json: bool,
}

pub async fn run(config: &Config, args: Args) -> anyhow::Result<ExitCode> {
    let messages = match open_views(config).await? {
        Some(views) => store::messages(&*views, &args.conversation, &args.as_user).await?,
        // No views yet: nobody belongs to anything.
        None => Err(NotAMember {
            user: args.as_user.clone(),
            conversation: args.conversation.clone(),
        })?,
    };
    if args.json {
        println!("{}", serde_json::to_string(&messages)?);
        return Ok(ExitCode::SUCCESS);
    }
    if messages.is_empty() {
        println!(
            "no messages of {} visible to {}",
            args.conversation, args.as_user
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>14}  {:<12} {:<10} {:<8} TEXT  [delivered to | read by]",
        "SENT AT MS", "MESSAGE", "SENDER", "FLAGS"
    );
    for m in messages {
        let flags = match (m.deleted, m.edited) {
            (true, _) => "deleted",
            (false, true) => "edited",
            _ => "",
        };
        let body = match (&m.text, &m.ciphertext, &m.media) {
            (Some(t), _, _) => t.clone(),
            (None, Some(_), _) => "(encrypted)".to_string(),
            (None, None, Some(media)) => format!("(media {} {})", media.mime_type, media.url),
            (None, None, None) => "(deleted)".to_string(),
        };
        println!(
            "{:>14}  {:<12} {:<10} {:<8} {body}  [{} | {}]",
            m.sent_at_ms,
            m.message_id,
            m.sender_id,
            flags,
            m.delivered_to.join(","),
            m.read_by.join(",")
        );
    }
    Ok(ExitCode::SUCCESS)
}
