//! `labstream lag` and `labstream replay`: where labstream's consumer groups stand in
//! their topics, and moving a stopped group back to a time so its workers read again
//! from there (the sinks' writes are idempotent, so a replay only fills what is missing).

use crate::config::Settings;
use anyhow::{Context, bail};
use labstream_bus::{GroupAdmin, GroupDescription, OffsetMove, ResetTarget};
use labstream_schemas::Topics;
use labstream_schemas::alert_rule::is_rule_topic;
use labstream_sinks::lake::LakeSource;
use std::time::Duration;

#[derive(clap::Args)]
pub(crate) struct LagArgs {
    /// Only this consumer group (default: every labstream group of the settings).
    #[arg(long)]
    group: Option<String>,
    /// The topic of the group (default: the one the group's role reads).
    #[arg(long, requires = "group")]
    topic: Option<String>,
}

#[derive(clap::Args)]
#[command(
    after_help = "Stop the group's workers first (e.g. `labstream sink lake`, or `labstream serve` \
running that sink), run without --execute to see the moves, then with --execute, then start the workers again."
)]
pub(crate) struct ReplayArgs {
    /// The consumer group to move, e.g. labstream-sink-mongo (`labstream lag` lists them).
    #[arg(long)]
    group: String,
    /// Where to move it: an RFC 3339 time or a duration ago such as `90m` (the first
    /// record at or after it; partitions without one go to their end), `earliest` or `latest`.
    #[arg(long)]
    to: String,
    /// The topic (default: the one the group's role reads, from the settings).
    #[arg(long)]
    topic: Option<String>,
    /// Move the offsets. Without it, only print the moves (a dry run).
    #[arg(long)]
    execute: bool,
}

/// A consumer group labstream runs, and what it reads.
struct KnownGroup {
    role: &'static str,
    /// The command whose processes are the group's members.
    command: &'static str,
    group: String,
    reads: Reads,
}

enum Reads {
    Topic(String),
    /// Every `<prefix>alerts.<name>` topic of a rule (they come and go with the rules).
    AlertTopics,
}

fn known_groups(settings: &Settings) -> Vec<KnownGroup> {
    let topics = Topics::new(&settings.kafka.topic_prefix);
    vec![
        KnownGroup {
            role: "sinks.mongo",
            command: "labstream sink mongo",
            group: settings.sinks.mongo.group_id.clone(),
            reads: Reads::Topic(topics.samples_raw()),
        },
        KnownGroup {
            role: "sinks.lake",
            command: "labstream sink lake",
            group: settings.sinks.lake.group_id.clone(),
            reads: Reads::Topic(match settings.sinks.lake.source {
                LakeSource::Enriched => topics.samples_enriched(),
                LakeSource::Raw => topics.samples_raw(),
            }),
        },
        KnownGroup {
            role: "processors.enrichment",
            command: "labstream process enrichment",
            group: settings.processors.enrichment.group_id.clone(),
            reads: Reads::Topic(topics.samples_raw()),
        },
        KnownGroup {
            role: "processors.alerts",
            command: "labstream process alerts",
            group: settings.processors.alerts.group_id.clone(),
            reads: Reads::Topic(topics.samples_raw()),
        },
        KnownGroup {
            role: "sinks.alerts",
            command: "labstream sink alerts",
            group: settings.sinks.alerts.group_id.clone(),
            reads: Reads::AlertTopics,
        },
        KnownGroup {
            role: "processors.webhooks",
            command: "labstream process webhooks",
            group: settings.processors.webhooks.group_id.clone(),
            reads: Reads::AlertTopics,
        },
    ]
}

/// The topics `group` reads: `--topic`, or what its role reads according to the settings.
async fn topics_of(
    settings: &Settings,
    admin: &GroupAdmin,
    group: &str,
    topic: Option<String>,
) -> anyhow::Result<Vec<String>> {
    if let Some(t) = topic {
        return Ok(vec![t]);
    }
    let known = known_groups(settings);
    match known.into_iter().find(|k| k.group == group) {
        Some(KnownGroup {
            reads: Reads::Topic(t),
            ..
        }) => Ok(vec![t]),
        Some(KnownGroup {
            reads: Reads::AlertTopics,
            ..
        }) => {
            let prefix = Topics::new(&settings.kafka.topic_prefix).alerts_topic("");
            let mut topics: Vec<String> = admin
                .topics()
                .await?
                .into_iter()
                .filter(|t| {
                    t.strip_prefix(&prefix)
                        .is_some_and(|name| !name.is_empty() && is_rule_topic(name))
                })
                .collect();
            topics.sort();
            Ok(topics)
        }
        None => bail!(
            "{group} is not one of labstream's consumer groups in these settings ({}); name its topic with --topic",
            known_groups(settings)
                .iter()
                .map(|k| k.group.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

async fn connect(settings: &Settings) -> anyhow::Result<()> {
    labstream_bus::probe(&settings.kafka, Duration::from_secs(15))
        .await
        .context("start Kafka (infra/local/stack up) or set LABSTREAM__KAFKA__BROKERS")
}

fn members_line(d: &GroupDescription) -> String {
    if d.members.is_empty() {
        return format!("state {}, no live members", state_name(d));
    }
    format!(
        "state {}, {} live member(s): {}",
        state_name(d),
        d.members.len(),
        d.members
            .iter()
            .map(|m| format!("{}@{}", m.client_id, m.client_host.trim_start_matches('/')))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn state_name(d: &GroupDescription) -> &str {
    if d.state.is_empty() { "Dead" } else { &d.state }
}

pub(crate) async fn lag(settings: &Settings, args: LagArgs) -> anyhow::Result<()> {
    connect(settings).await?;
    let groups: Vec<(&'static str, String, Option<String>)> = match args.group {
        Some(g) => {
            let role = known_groups(settings)
                .into_iter()
                .find(|k| k.group == g)
                .map_or("", |k| k.role);
            vec![(role, g, args.topic)]
        }
        None => known_groups(settings)
            .into_iter()
            .map(|k| (k.role, k.group, None))
            .collect(),
    };
    outln!(
        "{:<32} {:<28} {:>9} {:>12} {:>12} {:>10}",
        "GROUP",
        "TOPIC",
        "PARTITION",
        "COMMITTED",
        "END",
        "LAG"
    )?;
    let mut summaries = Vec::new();
    for (role, group, topic) in groups {
        let role = if role.is_empty() {
            String::new()
        } else {
            format!(" ({role})")
        };
        let admin = GroupAdmin::new(&settings.kafka, &group)?;
        let described = admin.describe().await?;
        let topics = topics_of(settings, &admin, &group, topic).await?;
        if topics.is_empty() {
            summaries.push(format!(
                "{group}{role}: no topic to read yet, {}",
                members_line(&described)
            ));
            continue;
        }
        let mut total = 0;
        let mut problems = Vec::new();
        for topic in &topics {
            let offsets = match admin.offsets(topic).await {
                Ok(o) => o,
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            };
            for p in &offsets {
                total += p.lag();
                outln!(
                    "{:<32} {:<28} {:>9} {:>12} {:>12} {:>10}",
                    group,
                    topic,
                    p.partition,
                    p.committed
                        .map_or_else(|| "-".to_owned(), |c| c.to_string()),
                    p.end,
                    p.lag()
                )?;
            }
        }
        if problems.len() == topics.len() {
            summaries.push(format!("{group}{role}: {}", problems.join("; ")));
            continue;
        }
        summaries.push(format!(
            "{group}{role}: lag {total} on {}, {}",
            topics.join(", "),
            members_line(&described)
        ));
    }
    outln!()?;
    for s in summaries {
        outln!("{s}")?;
    }
    Ok(())
}

/// What a replay of a processor group writes again downstream (sink groups write
/// nothing twice: MongoDB skips stored samples, the lake skips stored offsets).
fn rewrite_note(settings: &Settings, group: &str) -> Option<&'static str> {
    if group == settings.processors.enrichment.group_id {
        Some(
            "the enrichment re-emits the replayed samples to samples.enriched under new offsets; \
             the lake sink stores them again until compaction merges the files holding both copies",
        )
    } else if group == settings.processors.webhooks.group_id {
        Some("webhook delivery posts the replayed alert events to the endpoints again")
    } else if group == settings.processors.alerts.group_id {
        Some(
            "the alerts processor evaluates the replayed samples again and may publish alert events again",
        )
    } else {
        None
    }
}

fn parse_target(to: &str) -> anyhow::Result<ResetTarget> {
    match to.trim().to_ascii_lowercase().as_str() {
        "earliest" => Ok(ResetTarget::Earliest),
        "latest" => Ok(ResetTarget::Latest),
        _ => {
            if let Ok(ago) = humantime::parse_duration(to.trim()) {
                let ago = i64::try_from(ago.as_millis()).unwrap_or(i64::MAX);
                return Ok(ResetTarget::Time(
                    chrono::Utc::now().timestamp_millis().saturating_sub(ago),
                ));
            }
            chrono::DateTime::parse_from_rfc3339(to.trim())
                .map(|t| ResetTarget::Time(t.timestamp_millis()))
                .with_context(|| {
                    format!(
                        "--to {to:?} is not an RFC 3339 time (e.g. 2026-11-23T09:30:00Z), a duration ago (e.g. 90m), earliest or latest"
                    )
                })
        }
    }
}

fn print_moves(moves: &[OffsetMove]) -> std::io::Result<()> {
    outln!(
        "{:>9} {:>12}    {:>12} {:>10} {:>12}",
        "PARTITION",
        "COMMITTED",
        "TARGET",
        "RE-READ",
        "THEN TO READ"
    )?;
    for m in moves {
        outln!(
            "{:>9} {:>12} -> {:>12} {:>10} {:>12}",
            m.partition,
            m.current.map_or_else(|| "-".to_owned(), |c| c.to_string()),
            m.target,
            m.reread(),
            m.to_read()
        )?;
    }
    let reread: i64 = moves.iter().map(OffsetMove::reread).sum();
    let to_read: i64 = moves.iter().map(OffsetMove::to_read).sum();
    if reread >= 0 {
        outln!("total: {reread} records read again, {to_read} to read in all")?;
    } else {
        outln!(
            "total: {} records SKIPPED (the target is after the committed offsets), {to_read} to read in all",
            -reread
        )?;
    }
    Ok(())
}

pub(crate) async fn replay(settings: &Settings, args: ReplayArgs) -> anyhow::Result<()> {
    let target = parse_target(&args.to)?;
    connect(settings).await?;
    let admin = GroupAdmin::new(&settings.kafka, &args.group)?;
    let topics = topics_of(settings, &admin, &args.group, args.topic.clone()).await?;
    if topics.is_empty() {
        bail!(
            "group {} has no topic to read yet; nothing to move",
            args.group
        );
    }
    let described = admin.describe().await?;
    outln!(
        "group {} on {}: {}",
        args.group,
        topics.join(", "),
        members_line(&described)
    )?;
    match target {
        ResetTarget::Time(ms) => outln!(
            "to {}: the first record at or after it in each partition (the end where there is none)",
            chrono::DateTime::from_timestamp_millis(ms).map_or_else(
                || args.to.clone(),
                |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            )
        )?,
        ResetTarget::Earliest => outln!("to earliest: the oldest record still in each partition")?,
        ResetTarget::Latest => {
            outln!("to latest: the end of each partition (nothing is read again)")?
        }
    }
    let mut moves = Vec::new();
    for topic in &topics {
        let planned = admin.plan_reset(topic, target).await?;
        if topics.len() > 1 {
            outln!("{topic}:")?;
        }
        print_moves(&planned)?;
        moves.extend(planned);
    }
    if let Some(note) = rewrite_note(settings, &args.group) {
        outln!("note: {note}")?;
    }
    if described.has_live_members() {
        let command = known_groups(settings)
            .into_iter()
            .find(|k| k.group == args.group)
            .map_or("the processes of this group", |k| k.command);
        let advice = format!(
            "group {} has {} live member(s); their next commit would undo the move. Stop them first \
             ({command}, or `labstream serve` if it runs that role), check that `labstream lag --group {}` \
             shows no live members (a killed worker leaves after its session timeout, about 10 s), run \
             this again, then start the workers: they resume from the new offsets",
            args.group,
            described.members.len(),
            args.group
        );
        if args.execute {
            bail!("refused: {advice}");
        }
        outln!("dry run: nothing changed. Note: --execute would be refused now: {advice}")?;
        return Ok(());
    }
    if !args.execute {
        outln!("dry run: nothing changed; run again with --execute to move the offsets")?;
        return Ok(());
    }
    admin
        .apply_reset(&moves)
        .await
        .context("moving the offsets")?;
    for topic in &topics {
        let after = admin.offsets(topic).await?;
        for m in moves.iter().filter(|m| &m.topic == topic) {
            let now = after
                .iter()
                .find(|a| a.partition == m.partition)
                .and_then(|a| a.committed);
            if now != Some(m.target) {
                bail!(
                    "partition {} of {topic} is at {now:?} after the reset, not {}; a member may have joined meanwhile: stop it and run again",
                    m.partition,
                    m.target
                );
            }
        }
    }
    outln!(
        "moved group {} on {}; start its workers to read from there",
        args.group,
        topics.join(", ")
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(parse_target("earliest").unwrap(), ResetTarget::Earliest);
        assert_eq!(parse_target("LATEST").unwrap(), ResetTarget::Latest);
        assert_eq!(
            parse_target("2026-11-23T00:00:00Z").unwrap(),
            ResetTarget::Time(1_795_392_000_000)
        );
        assert!(format!("{:#}", parse_target("yesterday").unwrap_err()).contains("RFC 3339"));
        let ResetTarget::Time(ms) = parse_target("90m").unwrap() else {
            panic!("a duration is a time ago")
        };
        let ago = chrono::Utc::now().timestamp_millis() - ms;
        assert!((5_400_000..5_410_000).contains(&ago), "{ago}");
    }
}
