//! Decisions: one mechanism for every use case that reads or writes more
//! than one stream (a hold conversion, a series, a deployment of a
//! booking; pools, waitlists and quotas next).
//!
//! A decision is a value with its query and its rule, after disintegrate's
//! `Decision` and the Dynamic Consistency Boundary idea: [`Decision::query`]
//! names what it reads (streams, and the write side's verdict on claims),
//! [`Decision::decide`] is a pure function of what was read that answers
//! the commands to commit. The runner reads, decides, has each command
//! decided by its aggregate on the state that was read, and commits them
//! all through the one commit path with optimistic concurrency on every
//! stream it writes: when one of them moved since it was read, the whole
//! decision runs again on fresh state. That is the consistency boundary,
//! and it is narrower than DCB's append condition: a stream the decision
//! only reads (a deployment's booking) is not checked again at commit; a
//! decision that needs one unchanged links a command on it. Claims read
//! through the query are advisory (they shape the answer, as a series'
//! skipped occurrences do); the commit checks every reservation again
//! under the resource's lock.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use muster_domain::policy::Claim;
use muster_domain::pool::Selector;
use muster_domain::{Aggregate, TenantId};
use muster_store::effects::WriteSide;
use muster_store::ledger::Availability;
use muster_store::{
    CommandContext, Decided, Executed, Loaded, LockRequest, Locked, Store, StoreError,
};
use uuid::Uuid;

use crate::outcome::Refusal;

/// A use case's decision: what it reads, and the rule that turns what it
/// read into commands.
pub trait Decision: Send + Sync {
    /// The aggregate of the stream the decision is about: `If-Match`, the
    /// idempotency record and the answer are that stream's.
    type On: WriteSide + Send + Sync + 'static;

    /// The use case's name, for spans and metrics (`booking.request`,
    /// `series.cancel`).
    fn name(&self) -> &'static str;

    /// The stream the decision is about.
    fn stream_id(&self) -> Uuid;

    /// What to read before deciding, given what was read so far: the
    /// runner asks again after each read until the answer names nothing
    /// new (a series is read before the bookings it lists).
    fn query(&self, read: &Read) -> Query {
        let _ = read;
        Query::default()
    }

    /// The rule: the command on the decision's own stream and the commands
    /// on others, or why not. Pure; it sees only what was read.
    fn decide(&self, read: &Read) -> Result<Plan<Self::On>, Refusal>;

    /// The request's field that named `resource_id`, for "no such
    /// resource".
    fn resource_field(&self, resource_id: Uuid) -> String {
        let _ = resource_id;
        "resource_id".to_owned()
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type AnyLoaded = Box<dyn Any + Send + Sync>;
type LoadFn =
    for<'a> fn(&'a Store, &'a TenantId, Uuid) -> BoxFuture<'a, Result<AnyLoaded, StoreError>>;

fn load<A: Aggregate + Send + Sync + 'static>(
    store: &Store,
    tenant: &TenantId,
    id: Uuid,
) -> BoxFuture<'static, Result<AnyLoaded, StoreError>>
where
    A::Event: Send,
{
    let store = store.clone();
    let tenant = tenant.clone();
    Box::pin(async move {
        let loaded = store.load_stream::<A>(&tenant, id).await?;
        Ok(Box::new(loaded) as AnyLoaded)
    })
}

/// What a decision reads: streams by id, the write side's verdict on
/// claims (each checked alone against what is held now), the resources a
/// pool's selector takes, and the claims it may take under their locks.
#[derive(Default)]
pub struct Query {
    streams: Vec<(Uuid, LoadFn)>,
    claims: Vec<(Uuid, Claim)>,
    selectors: Vec<(Uuid, Selector)>,
    locks: Option<LockRequest>,
}

impl Query {
    /// Also read stream `id` of aggregate `A`.
    pub fn stream<A>(mut self, id: Uuid) -> Self
    where
        A: Aggregate + Send + Sync + 'static,
        A::Event: Send,
    {
        self.streams
            .push((id, |store, tenant, id| load::<A>(store, tenant, id)));
        self
    }

    /// Also read every stream of `ids`, of aggregate `A`.
    pub fn streams<A>(self, ids: impl IntoIterator<Item = Uuid>) -> Self
    where
        A: Aggregate + Send + Sync + 'static,
        A::Event: Send,
    {
        ids.into_iter()
            .fold(self, |query, id| query.stream::<A>(id))
    }

    /// Also ask the write side's rule about `claims` (resource, claim).
    pub fn claims(mut self, claims: Vec<(Uuid, Claim)>) -> Self {
        self.claims = claims;
        self
    }

    /// Also read which live resources `selector` takes, under `key`
    /// (a pool's id).
    pub fn matching(mut self, key: Uuid, selector: Selector) -> Self {
        self.selectors.push((key, selector));
        self
    }

    /// Decide under the locks of the resources `request` claims: the
    /// decision then runs in the transaction that commits it, and sees the
    /// write side's verdict on each claim there ([`Read::locked`]). A
    /// decision under locks must read every stream it commands (the ones
    /// it creates aside).
    pub fn lock(mut self, request: LockRequest) -> Self {
        self.locks = Some(request);
        self
    }
}

/// What a decision read.
#[derive(Default)]
pub struct Read {
    streams: HashMap<Uuid, AnyLoaded>,
    claims: Option<Vec<(Uuid, Availability)>>,
    matching: HashMap<Uuid, Vec<Uuid>>,
    locks: Option<LockRequest>,
    locked: Option<Locked>,
}

impl Read {
    /// Stream `id` as read, if it was read as an `A` (version 0: it does
    /// not exist).
    pub fn stream<A: Aggregate + 'static>(&self, id: Uuid) -> Option<&Loaded<A>> {
        self.streams.get(&id)?.downcast_ref::<Loaded<A>>()
    }

    /// The state of stream `id`, if it was read and exists.
    pub fn state<A: Aggregate + 'static>(&self, id: Uuid) -> Option<&A> {
        self.stream::<A>(id)
            .filter(|loaded| loaded.version > 0)
            .map(|loaded| &loaded.state)
    }

    /// The write side's verdict on each claim of the query, in its order.
    pub fn availability(&self) -> &[(Uuid, Availability)] {
        self.claims.as_deref().unwrap_or(&[])
    }

    /// The resources the selector read under `key` takes, by id.
    pub fn matching(&self, key: Uuid) -> &[Uuid] {
        self.matching.get(&key).map_or(&[], Vec::as_slice)
    }

    /// Whether the selector under `key` was read.
    pub fn is_matched(&self, key: Uuid) -> bool {
        self.matching.contains_key(&key)
    }

    /// What the locks show, for a decision under locks.
    pub fn locked(&self) -> Option<&Locked> {
        self.locked.as_ref()
    }

    /// Reads what `query` names and this has not read yet; `false` when it
    /// names nothing new.
    async fn extend(
        &mut self,
        store: &Store,
        tenant: &TenantId,
        query: Query,
    ) -> Result<bool, StoreError> {
        let mut grew = false;
        for (id, load) in query.streams {
            if let std::collections::hash_map::Entry::Vacant(entry) = self.streams.entry(id) {
                entry.insert(load(store, tenant, id).await?);
                grew = true;
            }
        }
        if !query.claims.is_empty() && self.claims.is_none() {
            self.claims = Some(store.check_claims(tenant, &query.claims, None).await?);
            grew = true;
        }
        for (key, selector) in query.selectors {
            if let std::collections::hash_map::Entry::Vacant(entry) = self.matching.entry(key) {
                entry.insert(store.resources_matching(tenant, &selector).await?);
                grew = true;
            }
        }
        if query.locks.is_some() {
            self.locks = query.locks;
        }
        Ok(grew)
    }
}

/// The commands a decision commits: one on its own stream, and any on
/// other streams, all or nothing.
pub struct Plan<A: Aggregate> {
    command: A::Command,
    linked: Vec<Box<dyn LinkedCommand>>,
}

impl<A: Aggregate> Plan<A> {
    /// `command` on the decision's own stream.
    pub fn new(command: A::Command) -> Self {
        Self {
            command,
            linked: Vec::new(),
        }
    }

    /// Also `command` on stream `stream_id` of aggregate `B`, decided on
    /// that stream's state as read (read now if the decision did not, and
    /// the command does not create it) and committed with optimistic
    /// concurrency on it. Its working-set changes apply before the own
    /// command's.
    pub fn link<B>(mut self, stream_id: Uuid, command: B::Command) -> Self
    where
        B: WriteSide + Send + Sync + 'static,
        B::Command: Send + Sync,
        B::Event: Send,
    {
        self.linked
            .push(Box::new(Linked::<B> { stream_id, command }));
        self
    }
}

/// A linked command, whatever its aggregate.
trait LinkedCommand: Send + Sync {
    fn stream_id(&self) -> Uuid;
    /// Whether it creates its stream (nothing to read).
    fn creates(&self) -> bool;
    fn load(&self) -> LoadFn;
    fn decide(
        self: Box<Self>,
        ctx: &CommandContext,
        loaded: Option<&AnyLoaded>,
    ) -> Result<Decided, StoreError>;
}

struct Linked<B: Aggregate> {
    stream_id: Uuid,
    command: B::Command,
}

impl<B> LinkedCommand for Linked<B>
where
    B: WriteSide + Send + Sync + 'static,
    B::Command: Send + Sync,
    B::Event: Send,
{
    fn stream_id(&self) -> Uuid {
        self.stream_id
    }

    fn creates(&self) -> bool {
        B::creates(&self.command)
    }

    fn load(&self) -> LoadFn {
        |store, tenant, id| load::<B>(store, tenant, id)
    }

    fn decide(
        self: Box<Self>,
        ctx: &CommandContext,
        loaded: Option<&AnyLoaded>,
    ) -> Result<Decided, StoreError> {
        let fresh = Loaded::<B>::default();
        let loaded = loaded
            .and_then(|l| l.downcast_ref::<Loaded<B>>())
            .unwrap_or(&fresh);
        Decided::linked(ctx, self.stream_id, loaded, self.command).map(|(decided, _)| decided)
    }
}

/// Why a decision did not commit.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The decision (or an aggregate) refused.
    Refused(Refusal),
    /// The store answered otherwise (a refusal of its own, or a fault).
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Failure::Refused(r)
    }
}

/// Events of a decision's own stream.
pub type EventsOf<D> = <<D as Decision>::On as Aggregate>::Event;

/// Runs `decision` through the one commit path: read, decide, commit;
/// again on fresh state when a stream it read moved meanwhile.
pub(crate) async fn execute<D: Decision>(
    store: &Store,
    ctx: &CommandContext,
    decision: &D,
) -> Result<Executed<EventsOf<D>>, Failure>
where
    <D::On as Aggregate>::Command: Send,
    EventsOf<D>: Send,
{
    let own = decision.stream_id();
    let read_all = || async move {
        let mut read = Read::default();
        while read
            .extend(store, &ctx.tenant, decision.query(&read))
            .await?
        {}
        Ok::<_, Failure>(read)
    };
    // Decided on a probe of the query: a decision that locks runs in the
    // transaction that commits it.
    let locks = decision.query(&Read::default()).locks.is_some();
    let (outcome, events) = if locks {
        store
            .execute_locked(
                ctx,
                D::On::STREAM_TYPE,
                own,
                || async move {
                    let mut read = read_all().await?;
                    let request = read.locks.take().unwrap_or_default();
                    Ok((read, request))
                },
                |read: &mut Read, locked: Locked| {
                    read.locked = Some(locked);
                    decide_read(ctx, decision, read)
                },
            )
            .await?
    } else {
        store
            .execute_with(ctx, D::On::STREAM_TYPE, own, || async move {
                let mut read = read_all().await?;
                let plan = decision.decide(&read)?;
                let read_own = read
                    .streams
                    .remove(&own)
                    .and_then(|loaded| loaded.downcast::<Loaded<D::On>>().ok());
                let loaded = match read_own {
                    Some(loaded) => *loaded,
                    None if D::On::creates(&plan.command) => Loaded::default(),
                    None => store.load_stream::<D::On>(&ctx.tenant, own).await?,
                };
                let (mut decided, events) = Decided::own(ctx, own, &loaded, plan.command)?;
                for linked in plan.linked {
                    let id = linked.stream_id();
                    if !read.streams.contains_key(&id) && !linked.creates() {
                        let loaded = (linked.load())(store, &ctx.tenant, id).await?;
                        read.streams.insert(id, loaded);
                    }
                    decided.link(linked.decide(ctx, read.streams.get(&id))?);
                }
                Ok::<_, Failure>((decided, events))
            })
            .await?
    };
    metrics::counter!("muster_decisions_total", "decision" => decision.name(), "outcome" => "executed")
        .increment(1);
    Ok(Executed { outcome, events })
}

/// A decision under locks, decided on what it read (every stream it
/// commands among it): no I/O while the locks are held.
fn decide_read<D: Decision>(
    ctx: &CommandContext,
    decision: &D,
    read: &Read,
) -> Result<(Decided, Vec<EventsOf<D>>), Failure> {
    let plan = decision.decide(read)?;
    let own = decision.stream_id();
    let fresh = Loaded::<D::On>::default();
    let loaded = match read.stream::<D::On>(own) {
        Some(loaded) => loaded,
        None if D::On::creates(&plan.command) => &fresh,
        None => return Err(unread(own)),
    };
    let (mut decided, events) = Decided::own(ctx, own, loaded, plan.command)?;
    for linked in plan.linked {
        let id = linked.stream_id();
        let loaded = read.streams.get(&id);
        if loaded.is_none() && !linked.creates() {
            return Err(unread(id));
        }
        decided.link(linked.decide(ctx, loaded)?);
    }
    Ok((decided, events))
}

/// A decision under locks commanded a stream it did not read: a bug of
/// the decision, refused rather than decided on nothing.
fn unread(stream_id: Uuid) -> Failure {
    Failure::Store(StoreError::CorruptRow(format!(
        "a decision under locks commands stream {stream_id} without reading it"
    )))
}

/// A command on one stream, as a decision: it reads that stream (unless
/// the command creates it) and its aggregate decides.
pub(crate) struct OnStream<A: Aggregate> {
    /// The use case.
    pub name: &'static str,
    /// The stream.
    pub stream_id: Uuid,
    /// The command.
    pub command: A::Command,
    /// The request's field that names a resource.
    pub resource_field: &'static str,
}

impl<A> Decision for OnStream<A>
where
    A: WriteSide + Send + Sync + 'static,
    A::Command: Clone + Send + Sync,
    A::Event: Send,
{
    type On = A;

    fn name(&self) -> &'static str {
        self.name
    }

    fn stream_id(&self) -> Uuid {
        self.stream_id
    }

    fn query(&self, _: &Read) -> Query {
        if A::creates(&self.command) {
            Query::default()
        } else {
            Query::default().stream::<A>(self.stream_id)
        }
    }

    fn decide(&self, _: &Read) -> Result<Plan<A>, Refusal> {
        Ok(Plan::new(self.command.clone()))
    }

    fn resource_field(&self, _: Uuid) -> String {
        self.resource_field.to_owned()
    }
}
