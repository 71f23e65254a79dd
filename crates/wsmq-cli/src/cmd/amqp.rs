//! The commands that work on RabbitMQ (`--amqp-url`): `send`, `queue create | stats | delete`
//! and `publish`, through the gateway's own AMQP engine, so queues are declared and messages
//! published exactly as the gateways do (durable quorum queue bound to the direct exchange,
//! publisher confirms, an rsmq-style `message-id`); `queue create` maps `--max-receives`,
//! `--ttl` and `--dead-letter` onto the quorum queue's arguments as the engine does.

use std::path::Path;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use wsmq_gateway::engine::{
    Broker, EngineError, QueueRules, QueueStore,
    amqp::{AmqpConfig, AmqpEngine},
};

use super::{Ctx, check_channel_name, check_queue_name};
use crate::cli::{Command, QueueCmd, SendArgs};

/// Prefetch of the engine's consumers; the CLI runs none, so any value does.
const PREFETCH: usize = 64;

/// Runs `command` on RabbitMQ, or says it is not available there.
pub(crate) async fn run(ctx: &Ctx, command: Command) -> anyhow::Result<()> {
    // Check the input before connecting, as the Redis commands do.
    let mut rules = QueueRules::default();
    match &command {
        Command::Send(args) => check_queue_name(&args.queue)?,
        Command::Publish(args) => check_channel_name(&args.channel)?,
        Command::Queue(QueueCmd::Create { queue, attrs }) => {
            check_queue_name(queue)?;
            anyhow::ensure!(
                attrs.vt.is_none() && attrs.delay.is_none() && attrs.maxsize.is_none(),
                "--vt, --delay and --maxsize are rsmq queue attributes; RabbitMQ queues have \
                 none (see docs/amqp.md)"
            );
            // --max-receives, --ttl and --dead-letter become the quorum queue's arguments.
            let options = super::queue::options(queue, attrs)?;
            rules = QueueRules {
                max_receives: options.maxreceives.unwrap_or(0),
                ttl: options.ttl.unwrap_or(0),
                dead_letter: options.deadletter.filter(|name| !name.is_empty()),
            };
        }
        Command::Queue(QueueCmd::Stats { queue } | QueueCmd::Delete { queue }) => {
            check_queue_name(queue)?;
        }
        other => anyhow::bail!(
            "`{}` is not available with --amqp-url (RabbitMQ: send, queue create|stats|delete \
             and publish); drop --amqp-url to run it on Redis",
            name(other)
        ),
    }
    let engine = connect(ctx).await?;
    let result = match command {
        Command::Send(args) => send(ctx, &engine, args).await,
        Command::Publish(args) => {
            let routed = engine
                .publish(&args.channel, &args.message)
                .await
                .map_err(|err| engine_error(&args.channel, err))?;
            ctx.out.published(&args.channel, routed)
        }
        Command::Queue(QueueCmd::Create { queue, .. }) => {
            let created = engine
                .create_queue(&queue, &rules)
                .await
                .map_err(|err| engine_error(&queue, err))?;
            if created {
                ctx.out.queue_done(&queue, "created")
            } else {
                // As on Redis; and RabbitMQ would keep the arguments it has anyway.
                Err(anyhow::anyhow!("queue '{queue}' already exists"))
            }
        }
        Command::Queue(QueueCmd::Stats { queue }) => {
            let (ready, consumers) = engine
                .queue_counts(&queue)
                .await
                .map_err(|err| engine_error(&queue, err))?;
            ctx.out.amqp_queue_counts(&queue, ready, consumers)
        }
        Command::Queue(QueueCmd::Delete { queue }) => {
            engine
                .delete_queue(&queue)
                .await
                .map_err(|err| engine_error(&queue, err))?;
            ctx.out.queue_done(&queue, "deleted")
        }
        _ => unreachable!("refused above"),
    };
    engine.close().await;
    result
}

/// Connects with the `--amqp-*` options, validated as the gateway validates them.
async fn connect(ctx: &Ctx) -> anyhow::Result<std::sync::Arc<AmqpEngine>> {
    let url = ctx.global.amqp_url.as_deref().map(|url| {
        url.parse()
            .expect("parsing an AMQP URL argument never fails")
    });
    let config = AmqpConfig::from_args(
        url.as_ref(),
        ctx.global.amqp_queue_prefix.as_deref(),
        ctx.global.amqp_exchange.as_deref(),
    )
    .map_err(anyhow::Error::msg)?
    .context("--amqp-url is required")?;
    let connecting = AmqpEngine::connect(config.options(PREFETCH), None);
    match tokio::time::timeout(super::CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(engine)) => Ok(engine),
        Ok(Err(err)) => anyhow::bail!("{}", tidy(err)),
        Err(_) => anyhow::bail!(
            "cannot connect to RabbitMQ at {}: no answer within {}",
            config.url,
            humantime::format_duration(super::CONNECT_TIMEOUT)
        ),
    }
}

/// `send --message` or `send --file`: one confirmed publish per message, in order.
async fn send(ctx: &Ctx, engine: &AmqpEngine, args: SendArgs) -> anyhow::Result<()> {
    if args.replicas > 0 {
        anyhow::bail!(
            "--replicas is for Redis: on RabbitMQ a confirmed publish to a quorum queue is \
             already on a majority of its nodes"
        );
    }
    let queue = args.queue.as_str();
    let Some(path) = args.source.file else {
        let message = args
            .source
            .message
            .expect("clap requires --message or --file");
        let id = engine
            .send(queue, &message, args.delay)
            .await
            .map_err(|err| engine_error(queue, err))?;
        return ctx.out.sent_one(queue, &id);
    };
    let (reader, name) = open(&path).await?;
    let mut lines = BufReader::new(reader).lines();
    let mut ids = Vec::new();
    let mut line_no = 0usize;
    loop {
        let line = match lines.next_line().await {
            Ok(line) => line,
            Err(err) => {
                ctx.out.sent_many(queue, &ids, false)?;
                return Err(anyhow::Error::new(err)
                    .context(format!("cannot read {name} after line {line_no}")));
            }
        };
        let Some(line) = line else { break };
        line_no += 1;
        if line.is_empty() {
            continue;
        }
        match engine.send(queue, &line, args.delay).await {
            Ok(id) => {
                // Printed at once (text), as the Redis command prints each batch: after a
                // failure, what was sent is known and a rerun can skip it.
                ctx.out.sent_batch(std::slice::from_ref(&id))?;
                ids.push(id);
            }
            Err(err) => {
                let err = engine_error(queue, err).context(format!("{name} line {line_no}"));
                ctx.out.sent_many(queue, &ids, false)?;
                if ids.is_empty() {
                    return Err(err);
                }
                return Err(err.context(format!(
                    "stopped after sending {} messages (their ids are printed above)",
                    ids.len()
                )));
            }
        }
    }
    ctx.out.sent_many(queue, &ids, true)
}

/// The file, or stdin for `-`, with its name for messages.
async fn open(path: &Path) -> anyhow::Result<(std::pin::Pin<Box<dyn AsyncRead>>, String)> {
    if path == Path::new("-") {
        return Ok((Box::pin(tokio::io::stdin()), "stdin".to_owned()));
    }
    let name = path.display().to_string();
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {name}"))?;
    Ok((Box::pin(file), name))
}

/// An engine error about `name` (a queue or channel) as a sentence.
fn engine_error(name: &str, err: EngineError) -> anyhow::Error {
    match err {
        EngineError::QueueNotFound => anyhow::anyhow!("queue '{name}' not found"),
        EngineError::TooLarge => {
            anyhow::anyhow!("message longer than 65536 (the limit of queues on RabbitMQ)")
        }
        other => anyhow::anyhow!("{}", tidy(other)),
    }
}

/// The engine's words without its prefix.
fn tidy(err: EngineError) -> String {
    match err {
        EngineError::Unavailable(why) | EngineError::Invalid(why) => why,
        other => other.to_string(),
    }
}

/// The command's name as typed.
fn name(command: &Command) -> &'static str {
    match command {
        Command::Send(_) => "send",
        Command::Receive(_) => "receive",
        Command::Publish(_) => "publish",
        Command::Queue(QueueCmd::List) => "queue list",
        Command::Queue(QueueCmd::Set { .. }) => "queue set",
        Command::Queue(_) => "queue",
        Command::Token(_) => "token",
        Command::Channel(_) => "channel",
        Command::Nodes => "nodes",
    }
}
