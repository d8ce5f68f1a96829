//! What a finding is: its kind, severity, verdict, holder and evidence.

use std::fmt;
use std::time::SystemTime;

use crate::{Location, TaskKey};

/// The kinds of the danger findings catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Kind {
    /// Allocated while a task ran, still live a grace period after it ended.
    EscapedAllocation,
    /// For one span name, bytes left by closed instances grow window after window.
    SpanResidueGrowth,
    /// A running task's live bytes grow window after window.
    TaskMemoryGrowth,
    /// A task that has not run for a while keeps a lot of memory.
    SuspendedRetention,
    /// A task alive for long and not polled for long, holding memory.
    TaskStalled,
    /// `Rc`/`Arc` blocks that keep each other alive and that nothing else holds.
    UnreachableCycle,
    /// One code location or span makes many copies of the same bytes.
    CloneStorm,
    /// A spawned future of 1024 bytes or more.
    LargeFuture,
    /// Allocations of a task freed after the task ended (so by another task, or none): a
    /// hand-off figure, never a problem by itself.
    CrossTaskFree,
    /// Allocations made and freed again within their span, at a high rate.
    TemporaryChurn,
    /// A free (or realloc) of a block already freed, of one heapspan never handed out, of one
    /// in foreign custody, or with a layout other than the allocation's: caught by the
    /// allocator's header check, never forwarded.
    DeallocInvalid,
    /// A pointer handed to foreign code ([`crate::custody`]) not given back by its deadline or
    /// its task's end, freed by Rust while foreign code held it, or reclaimed twice.
    FfiCustody,
}

impl Kind {
    /// Every kind, in catalog order.
    pub const ALL: [Kind; 12] = [
        Kind::EscapedAllocation,
        Kind::SpanResidueGrowth,
        Kind::TaskMemoryGrowth,
        Kind::SuspendedRetention,
        Kind::TaskStalled,
        Kind::UnreachableCycle,
        Kind::CloneStorm,
        Kind::LargeFuture,
        Kind::CrossTaskFree,
        Kind::TemporaryChurn,
        Kind::DeallocInvalid,
        Kind::FfiCustody,
    ];

    /// The name on the wire (`heapspan.finding.kind`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::EscapedAllocation => "task.escaped_allocation",
            Kind::SpanResidueGrowth => "span.residue_growth",
            Kind::TaskMemoryGrowth => "task.memory_growth",
            Kind::SuspendedRetention => "task.suspended_retention",
            Kind::TaskStalled => "task.stalled",
            Kind::UnreachableCycle => "refcount.unreachable_cycle",
            Kind::CloneStorm => "clone.storm",
            Kind::LargeFuture => "task.large_future",
            Kind::CrossTaskFree => "alloc.cross_task_free",
            Kind::TemporaryChurn => "alloc.temporary_churn",
            Kind::DeallocInvalid => "dealloc.invalid",
            Kind::FfiCustody => "ffi.custody",
        }
    }

    /// The ranking's base score of the kind (see [`Verdict`]).
    pub(crate) const fn base(self) -> f64 {
        match self {
            Kind::EscapedAllocation => 0.8,
            Kind::SpanResidueGrowth => 0.95,
            Kind::TaskMemoryGrowth => 0.9,
            Kind::SuspendedRetention => 0.75,
            Kind::TaskStalled => 0.8,
            Kind::UnreachableCycle => 0.95,
            Kind::CloneStorm => 0.75,
            Kind::LargeFuture => 0.75,
            Kind::CrossTaskFree | Kind::TemporaryChurn | Kind::DeallocInvalid => 1.0,
            // The catalog's bonus for a danger-surface root (an FFI handover) is in the base.
            Kind::FfiCustody => 0.9,
        }
    }

    /// Whether the kind needs the relation graph (the live index) to be found at all.
    pub const fn needs_graph(self) -> bool {
        matches!(self, Kind::UnreachableCycle | Kind::CloneStorm)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// A figure worth knowing, not a problem.
    Info,
    /// Worth a look.
    Low,
    /// Likely a problem.
    Medium,
    /// A problem (the finding's span status is Error).
    High,
    /// A serious problem (status Error).
    Critical,
}

impl Severity {
    /// The name on the wire (`heapspan.finding.severity`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Every severity, lowest first.
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How strong the evidence is: the factor of the ranking's score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Deterministic evidence (a fully accounted cycle, a measured future size): 1.0.
    Confirmed,
    /// Significant but statistical or incomplete evidence (growth, an unowned escape): 0.7.
    Probable,
    /// A figure, not a claim (the info kinds): 0.2.
    Diagnostic,
}

impl Verdict {
    /// The factor of the score.
    pub const fn factor(self) -> f64 {
        match self {
            Verdict::Confirmed => 1.0,
            Verdict::Probable => 0.7,
            Verdict::Diagnostic => 0.2,
        }
    }

    /// The name on the wire (`heapspan.finding.verdict`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Confirmed => "confirmed",
            Verdict::Probable => "probable",
            Verdict::Diagnostic => "diagnostic",
        }
    }
}

/// What keeps a finding's memory alive, as far as heapspan can tell.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Holder {
    /// Nothing on the heap points at it (a leak, or a pointer held only on a stack or in a
    /// static).
    Nothing,
    /// Memory allocated by a task that is still running (the allocation was handed to it).
    Task(String),
    /// Memory no running task allocated: a global or a container that outlived the task that
    /// made it (`allocated_by` is that task's name, `None` outside any task).
    Container {
        /// The name of the task that allocated the holding block, if any.
        allocated_by: Option<String>,
    },
    /// The members of the cycle hold each other.
    Cycle,
    /// One allocation holds most of it: its size and, with sites on, where it was made.
    Allocation {
        /// Its bytes (with what it alone keeps alive).
        bytes: u64,
        /// Where it was allocated, when sites are captured.
        location: Option<String>,
    },
    /// Not known: the live index is off, so nothing says who points at it.
    Unknown,
}

impl Holder {
    /// The escape class of the catalog: `unowned`, `transferred`, `retained`, or `unknown`.
    pub fn class(&self) -> &'static str {
        match self {
            Holder::Nothing => "unowned",
            Holder::Task(_) => "transferred",
            Holder::Container { .. } => "retained",
            Holder::Cycle => "cycle",
            Holder::Allocation { .. } => "allocation",
            Holder::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::Nothing => f.write_str("nothing on the heap"),
            Holder::Task(t) => write!(f, "memory of running task {t}"),
            Holder::Container {
                allocated_by: Some(t),
            } => write!(f, "a container allocated by ended task {t}"),
            Holder::Container { allocated_by: None } => {
                f.write_str("a container allocated outside any task")
            }
            Holder::Cycle => f.write_str("the cycle itself"),
            Holder::Allocation {
                bytes,
                location: Some(l),
            } => write!(f, "one allocation of {bytes} B made at {l}"),
            Holder::Allocation {
                bytes,
                location: None,
            } => write!(f, "one allocation of {bytes} B"),
            Holder::Unknown => f.write_str("unknown (live index off)"),
        }
    }
}

/// One value of a finding's evidence.
#[derive(Clone, Debug, PartialEq)]
pub enum EvidenceValue {
    /// A count or a figure in bytes.
    Int(i64),
    /// A ratio or a rate.
    Float(f64),
    /// A name or a description.
    Text(String),
}

impl fmt::Display for EvidenceValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvidenceValue::Int(v) => write!(f, "{v}"),
            EvidenceValue::Float(v) => write!(f, "{v:.3}"),
            EvidenceValue::Text(v) => f.write_str(v),
        }
    }
}

/// A stable id: the same problem keeps its id across windows (a hash of its kind, code
/// location, task or span name and holder).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FindingId(pub u64);

impl fmt::Display for FindingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A claim about memory behaviour, with what backs it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Finding {
    /// Stable across windows (see [`FindingId`]).
    pub id: FindingId,
    /// What kind of problem.
    pub kind: Kind,
    /// How bad.
    pub severity: Severity,
    /// The ranking's score, 0..1: base(kind) × verdict + bonuses (repeated evidence).
    pub score: f64,
    /// How likely the claim is true, 0..1.
    pub confidence: f64,
    /// How strong the evidence is.
    pub verdict: Verdict,
    /// The bytes concerned (kind-specific: what escaped, the residue, the cycle's bytes…).
    pub bytes: u64,
    /// The allocations concerned, where known (0 when not).
    pub allocations: u64,
    /// The task name concerned.
    pub task_name: Option<String>,
    /// Tasks involved, at most 8 (for links to their window spans).
    pub tasks: Vec<TaskKey>,
    /// The span name concerned (`target::name`).
    pub span_name: Option<String>,
    /// The code location: the allocating site with sites on, else the task's spawn location.
    pub location: Option<Location>,
    /// What keeps the memory alive, for kinds that have one.
    pub holder: Option<Holder>,
    /// One sentence in plain words.
    pub summary: String,
    /// The evidence, as `(attribute name, value)` (the names are constants of
    /// [`crate::export::names`]).
    pub evidence: Vec<(&'static str, EvidenceValue)>,
    /// Whether the relation graph backed it.
    pub from_graph: bool,
    /// First window it was found in.
    pub first_seen: SystemTime,
    /// Latest window it was found in.
    pub last_seen: SystemTime,
    /// Windows it was found in.
    pub windows: u32,
    /// With the graph: the allocations at the root of its danger surface (the largest 64 of
    /// them: escaped blocks, a cycle's members, a task's
    /// largest holder, the copies of a storm). Allocation ids stay valid while the allocations
    /// live, so a later graph can draw their surface:
    /// `graph.to_dot(&DotOptions { highlight: finding.roots.clone(), ..Default::default() })`.
    pub roots: Vec<crate::graph::AllocId>,
}

impl Finding {
    /// The code location as `file:line`.
    pub fn location_str(&self) -> Option<String> {
        self.location
            .as_ref()
            .map(|l| format!("{}:{}", l.file, l.line))
    }

    /// Where: the task or span name, and the location.
    pub fn place(&self) -> String {
        let mut s = String::new();
        if let Some(t) = &self.task_name {
            s.push_str("task ");
            s.push_str(t);
        }
        if let Some(sp) = &self.span_name {
            if !s.is_empty() {
                s.push_str(", ");
            }
            s.push_str("span ");
            s.push_str(sp);
        }
        if let Some(l) = self.location_str() {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str("at ");
            s.push_str(&l);
        }
        if s.is_empty() {
            s.push_str("(no task or span)");
        }
        s
    }
}

/// FNV-1a over the parts that identify a problem.
pub(crate) fn finding_id(kind: Kind, parts: &[&str]) -> FindingId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for &x in b {
            h ^= u64::from(x);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    eat(kind.as_str().as_bytes());
    for p in parts {
        eat(p.as_bytes());
    }
    FindingId(h)
}
