//! Running a [`Chain`] over a batch: per-shard registers, selection and
//! stage state.
//!
//! [`Exec`] is a shard's working memory for one chain: per segment, a
//! column per temporary register (sized `batch_max` once, each with its own
//! string arena), two selection vectors, memo slots for table lookups, and
//! the state of its stateful stages (dedup, sample, the window that ends
//! it). `run` dispatches once per instruction per batch to a typed kernel.
//! Nothing here allocates once arenas, memos and state tables have grown to
//! their working size.

use super::kernels::{self, Col, K, Sel, Src, StrCol, SymCol, TextK, TextSrc, each};
use super::program::*;
use super::state::{CloseMode, DedupOutcome, DedupState, StepState, WindowState};
use super::table::{Cell, KeyRef, Table, float_lookup, int_lookup};
use crate::codec::batch::{Batch, Bitmap, Column, ColumnData, StrRef};
use crate::codec::{FieldType, Interner};
use xxhash_rust::xxh3::xxh3_64;

/// Counters a chain keeps per shard. Plain integers: only the owning shard
/// writes them; `metrics` publishes them between batches.
#[derive(Clone, Debug, Default)]
pub struct ExecCounters {
    /// Arithmetic results that were null because of overflow.
    pub overflow: u64,
    /// Results that were null because of a division by zero.
    pub div_zero: u64,
    /// Records removed by filter, dedup and sample stages.
    pub filtered: u64,
    /// Records taken into windows.
    pub windowed: u64,
    /// Records behind a window's watermark, dropped.
    pub late: u64,
    /// Records a full state table (`max_state_keys`) could not hold.
    pub state_full: u64,
    /// Records entering each stage.
    pub stage_in: Vec<u64>,
    /// Records leaving each stage onward (not routed, not filtered).
    pub stage_out: Vec<u64>,
}

/// What one `run` (or window flush) did, for the shard's metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Records removed by filter, dedup and sample stages.
    pub filtered: u64,
    /// Records taken into windows (they leave as aggregates).
    pub windowed: u64,
    /// Records behind a window's watermark, dropped.
    pub late: u64,
    /// Records refused by a full state table.
    pub state_full: u64,
    pub overflow: u64,
    pub div_zero: u64,
}

/// A temporary register: a column and the arena its strings live in.
#[derive(Debug, Default)]
struct Temp {
    col: Option<Column>,
    arena: Vec<u8>,
}

/// Receives the records a chain emits to a sink.
pub trait Emit {
    /// `rows` holds the records (already selected) for `spec.sink`.
    fn emit(&mut self, spec: &EmitSpec, rows: &Rows<'_>);

    /// `rows` are leaving the stage set with [`Exec::set_tap`], laid out
    /// as `spec` (its `sink` unused).
    fn tap(&mut self, _spec: &EmitSpec, _rows: &Rows<'_>) {}
}

/// A view of the registers and the selected rows, for encoding.
pub struct Rows<'a> {
    batch: &'a Batch,
    temps: &'a [Temp],
    n_inputs: usize,
    pub sel: Sel<'a>,
    pub symbols: &'a Interner,
}

impl<'a> Rows<'a> {
    /// The same registers with another selection of rows.
    pub fn with_sel<'b>(&self, sel: Sel<'b>) -> Rows<'b>
    where
        'a: 'b,
    {
        Rows {
            batch: self.batch,
            temps: self.temps,
            n_inputs: self.n_inputs,
            sel,
            symbols: self.symbols,
        }
    }

    /// Register `r`'s column and the arena holding its strings.
    pub fn column(&self, r: Reg) -> (&'a Column, &'a [u8]) {
        reg_col(self.batch, self.temps, self.n_inputs, r)
    }
}

fn reg_col<'a>(
    batch: &'a Batch,
    temps: &'a [Temp],
    n_inputs: usize,
    r: Reg,
) -> (&'a Column, &'a [u8]) {
    let r = r as usize;
    if r < n_inputs {
        (&batch.cols[r], &batch.arena)
    } else {
        let t = &temps[r - n_inputs];
        (
            t.col
                .as_ref()
                .expect("register present outside its own instruction"),
            &t.arena,
        )
    }
}

/// A memo slot entry not yet computed.
const UNSEEN: u32 = u32::MAX;
/// A memoised lookup miss.
const MISS: u32 = u32::MAX - 1;

/// One segment's working memory.
struct SegExec {
    temps: Vec<Temp>,
    sel: Vec<u32>,
    scratch_sel: Vec<u32>,
    memos: Vec<Vec<u32>>,
    states: Vec<Option<StepState>>,
    /// The window that ends this segment, and the batch it emits into.
    window: Option<(Box<WindowState>, Batch)>,
}

impl std::fmt::Debug for SegExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SegExec({} temps)", self.temps.len())
    }
}

/// Per-shard state to run one chain.
#[derive(Debug)]
pub struct Exec {
    segs: Vec<SegExec>,
    hash_buf: Vec<u8>,
    max_state_keys: u64,
    /// The tapped stage's last step: (segment, step).
    tap: Option<(usize, usize)>,
    pub counters: ExecCounters,
}

impl Exec {
    /// Working memory for `chain` with batches of at most `batch_max` rows
    /// and stage state of at most `max_state_keys` keys.
    pub fn new(chain: &Chain, batch_max: usize) -> Exec {
        Exec::with_limits(chain, batch_max, 1_000_000)
    }

    /// As [`Exec::new`], with `max_state_keys`.
    pub fn with_limits(chain: &Chain, batch_max: usize, max_state_keys: u64) -> Exec {
        let segs = chain
            .segments
            .iter()
            .map(|seg| {
                let window = seg.steps.iter().find_map(|st| match &st.action {
                    Action::Window { spec, .. } => Some((
                        Box::new(WindowState::new(spec.clone(), max_state_keys)),
                        Batch::new(&spec.output, batch_max),
                    )),
                    _ => None,
                });
                SegExec {
                    temps: seg
                        .temps
                        .iter()
                        .map(|&t| Temp {
                            col: Some(Column::new(t, batch_max)),
                            arena: Vec::new(),
                        })
                        .collect(),
                    sel: Vec::with_capacity(batch_max),
                    scratch_sel: Vec::with_capacity(batch_max),
                    memos: vec![Vec::new(); seg.memos.len()],
                    states: (0..seg.n_states).map(|_| None).collect(),
                    window,
                }
            })
            .collect();
        Exec {
            segs,
            hash_buf: Vec::with_capacity(256),
            max_state_keys,
            tap: None,
            counters: ExecCounters {
                stage_in: vec![0; chain.stages.len()],
                stage_out: vec![0; chain.stages.len()],
                ..Default::default()
            },
        }
    }

    /// Hands the rows leaving stage `stage` of `chain` (none: stop) to
    /// [`Emit::tap`] from the next batch on.
    pub fn set_tap(&mut self, chain: &Chain, stage: Option<usize>) {
        self.tap = stage
            .and_then(|k| chain.taps.get(k))
            .map(|t| (t.seg, t.step));
    }

    /// Takes over from `old`, the working memory of the previous
    /// generation's `old_chain`, the state of every stage that `chain` keeps
    /// unchanged (SPEC §5: the same name, definition text and input schema;
    /// for a window also the same size, lateness, key types and aggregates,
    /// which a `$param` could change): open windows, dedup keys, sample
    /// counters. A changed or new stage starts empty; what stays in `old`
    /// (changed and removed stages) is for the caller to close under the
    /// old generation with [`Exec::flush_windows`]. Returns how many states
    /// moved. Allocates nothing: a window's state is exchanged for the
    /// empty one `self` was built with.
    pub fn adopt(&mut self, chain: &Chain, old: &mut Exec, old_chain: &Chain) -> usize {
        let mut moved = 0;
        for (k, seg) in chain.segments.iter().enumerate() {
            for step in &seg.steps {
                let Some(os) = chain.same_stage_in(step.stage, old_chain) else {
                    continue;
                };
                let Some((ok, ostep)) = old_chain
                    .segments
                    .iter()
                    .enumerate()
                    .find_map(|(ok, s)| Some((ok, s.steps.iter().find(|t| t.stage == os)?)))
                else {
                    continue;
                };
                let (new_slot, old_slot) = match (&step.action, &ostep.action) {
                    (Action::Window { spec, .. }, Action::Window { spec: ospec, .. }) => {
                        if !spec.holds_same_state(ospec) {
                            continue;
                        }
                        let (Some((nw, _)), Some((ow, _))) =
                            (self.segs[k].window.as_mut(), old.segs[ok].window.as_mut())
                        else {
                            continue;
                        };
                        // Open windows and the watermark both carry over.
                        std::mem::swap(nw, ow);
                        nw.swap_spec(ow);
                        moved += 1;
                        continue;
                    }
                    (Action::Dedup { state, .. }, Action::Dedup { state: o, .. })
                    | (Action::SampleEvery { state, .. }, Action::SampleEvery { state: o, .. })
                    | (Action::SampleRate { state, .. }, Action::SampleRate { state: o, .. }) => {
                        (*state as usize, *o as usize)
                    }
                    _ => continue,
                };
                if let Some(st) = old.segs[ok].states[old_slot].take() {
                    self.segs[k].states[new_slot] = Some(st);
                    moved += 1;
                }
            }
        }
        self.adopt_memos(chain, old, old_chain);
        moved
    }

    /// Takes over `old`'s memo slots: a slot caching the same table (the
    /// same `Arc`) keeps what it learnt; any other takes an unused old
    /// slot's memory, emptied. Either way the first batches of a
    /// generation neither allocate nor redo every lookup.
    fn adopt_memos(&mut self, chain: &Chain, old: &mut Exec, old_chain: &Chain) {
        for (k, seg) in chain.segments.iter().enumerate() {
            for (m, key) in seg.memos.iter().enumerate() {
                let found = old_chain.segments.iter().enumerate().find_map(|(ok, os)| {
                    let om = os.memos.iter().enumerate().position(|(om, okey)| {
                        okey.same(key) && old.segs[ok].memos[om].capacity() > 0
                    })?;
                    Some((ok, om))
                });
                if let Some((ok, om)) = found {
                    std::mem::swap(&mut self.segs[k].memos[m], &mut old.segs[ok].memos[om]);
                }
            }
        }
        // Slots for changed tables: the largest memory left behind, emptied.
        for seg in &mut self.segs {
            for memo in seg.memos.iter_mut().filter(|v| v.capacity() == 0) {
                let spare = old
                    .segs
                    .iter_mut()
                    .flat_map(|s| s.memos.iter_mut())
                    .max_by_key(|v| v.capacity());
                if let Some(v) = spare.filter(|v| v.capacity() > 0) {
                    std::mem::swap(memo, v);
                    memo.clear();
                }
            }
        }
    }

    fn stats_since(&self, c0: &ExecCounters) -> RunStats {
        let c = &self.counters;
        RunStats {
            filtered: c.filtered - c0.filtered,
            windowed: c.windowed - c0.windowed,
            late: c.late - c0.late,
            state_full: c.state_full - c0.state_full,
            overflow: c.overflow - c0.overflow,
            div_zero: c.div_zero - c0.div_zero,
        }
    }

    fn snapshot(&self) -> ExecCounters {
        ExecCounters {
            stage_in: Vec::new(),
            stage_out: Vec::new(),
            ..self.counters.clone_scalars()
        }
    }

    /// Runs `chain` over every row of `batch`, handing emitted records to
    /// `out`. `now_ns` is the batch's processing time (`now()`, and the
    /// wall clock for idle windows). Windows closed by this batch's records
    /// run through the rest of the chain before it returns.
    pub fn run(
        &mut self,
        chain: &Chain,
        batch: &Batch,
        symbols: &mut Interner,
        now_ns: i64,
        out: &mut impl Emit,
    ) -> RunStats {
        debug_assert_eq!(chain.segments[0].n_inputs, batch.cols.len());
        let c0 = self.snapshot();
        self.run_seg(chain, 0, batch, symbols, now_ns, out);
        self.stats_since(&c0)
    }

    /// Closes windows: those idle for `size + lateness` of wall time
    /// (`idle_now_ns`), or all of them (`None`: shutdown, end of a test).
    pub fn flush_windows(
        &mut self,
        chain: &Chain,
        symbols: &mut Interner,
        now_ns: i64,
        idle_now_ns: Option<u64>,
        out: &mut impl Emit,
    ) -> RunStats {
        let c0 = self.snapshot();
        let mode = match idle_now_ns {
            Some(t) => CloseMode::Idle { now_wall_ns: t },
            None => CloseMode::All,
        };
        for k in 0..self.segs.len() {
            let Some(next) = chain.segments[k]
                .steps
                .iter()
                .find_map(|st| match st.action {
                    Action::Window { next, .. } => Some(next),
                    _ => None,
                })
            else {
                continue;
            };
            self.close_windows(chain, k, next, mode, symbols, now_ns, out);
        }
        self.stats_since(&c0)
    }

    /// Open window groups (window × key) over every window stage.
    pub fn window_groups(&self) -> usize {
        self.segs
            .iter()
            .filter_map(|s| s.window.as_ref())
            .map(|(w, _)| w.live())
            .sum()
    }

    #[allow(clippy::too_many_arguments)]
    fn close_windows(
        &mut self,
        chain: &Chain,
        k: usize,
        next: usize,
        mode: CloseMode,
        symbols: &mut Interner,
        now_ns: i64,
        out: &mut impl Emit,
    ) {
        let Some((mut w, mut wb)) = self.segs[k].window.take() else {
            return;
        };
        if w.begin_close(mode, symbols) > 0 {
            loop {
                wb.clear();
                let more = w.emit(&mut wb, symbols);
                if !wb.is_empty() {
                    self.run_seg(chain, next, &wb, symbols, now_ns, out);
                }
                if !more {
                    break;
                }
            }
        }
        self.segs[k].window = Some((w, wb));
    }

    fn run_seg(
        &mut self,
        chain: &Chain,
        k: usize,
        batch: &Batch,
        symbols: &mut Interner,
        now_ns: i64,
        out: &mut impl Emit,
    ) {
        let seg = &chain.segments[k];
        let n = batch.len();
        {
            let se = &mut self.segs[k];
            for t in &mut se.temps {
                t.arena.clear();
            }
            se.sel.clear();
        }
        // `all` until the first stage that narrows the selection.
        let mut all = true;
        let mut window_next = None;
        for (si, step) in seg.steps.iter().enumerate() {
            let se = &mut self.segs[k];
            let sel_len = if all { n } else { se.sel.len() };
            self.counters.stage_in[step.stage] += sel_len as u64;
            if sel_len == 0 {
                continue;
            }
            for ins in &step.instrs {
                let sel = if all { Sel::All(n) } else { Sel::Idx(&se.sel) };
                exec_instr(
                    ins,
                    sel,
                    batch,
                    &mut se.temps,
                    seg.n_inputs,
                    symbols,
                    now_ns,
                    &mut self.hash_buf,
                    &mut self.counters,
                    &mut se.memos,
                );
            }
            let syms: &Interner = symbols;
            match &step.action {
                Action::None => {}
                Action::Filter { pred } => {
                    narrow(se, pred, batch, seg.n_inputs, &mut all, n, true);
                    self.counters.filtered += (sel_len - se.sel.len()) as u64;
                }
                Action::Route { pred, emit } => {
                    // Matching rows go out; the rest continue.
                    se.scratch_sel.clear();
                    let sel = if all { Sel::All(n) } else { Sel::Idx(&se.sel) };
                    select_where(
                        pred,
                        sel,
                        batch,
                        &se.temps,
                        seg.n_inputs,
                        true,
                        &mut se.scratch_sel,
                    );
                    if !se.scratch_sel.is_empty() {
                        let rows = Rows {
                            batch,
                            temps: &se.temps,
                            n_inputs: seg.n_inputs,
                            sel: Sel::Idx(&se.scratch_sel),
                            symbols: syms,
                        };
                        out.emit(emit, &rows);
                    }
                    narrow(se, pred, batch, seg.n_inputs, &mut all, n, false);
                }
                Action::Tee { emit } => {
                    let rows = Rows {
                        batch,
                        temps: &se.temps,
                        n_inputs: seg.n_inputs,
                        sel: if all { Sel::All(n) } else { Sel::Idx(&se.sel) },
                        symbols: syms,
                    };
                    out.emit(emit, &rows);
                }
                Action::To { emits } => {
                    for e in emits {
                        let rows = Rows {
                            batch,
                            temps: &se.temps,
                            n_inputs: seg.n_inputs,
                            sel: if all { Sel::All(n) } else { Sel::Idx(&se.sel) },
                            symbols: syms,
                        };
                        out.emit(e, &rows);
                    }
                }
                Action::Dedup {
                    keys,
                    ts,
                    within_ns,
                    state,
                } => {
                    let max_keys = self.max_state_keys;
                    let st = se.states[*state as usize].get_or_insert_with(|| {
                        StepState::Dedup(Box::new(DedupState::new(max_keys)))
                    });
                    let StepState::Dedup(d) = st else {
                        unreachable!("state kinds fixed at compile time")
                    };
                    let (ts_col, _) = reg_col(batch, &se.temps, seg.n_inputs, *ts);
                    let ColumnData::I64(ts_v) = &ts_col.data else {
                        unreachable!("ts is a timestamp")
                    };
                    let mut state_full = 0;
                    let keep = |i: usize| -> bool {
                        if !ts_col.valid.get(i) {
                            return true;
                        }
                        d.key_buf.0.clear();
                        for &(r, _) in keys {
                            let (c, arena) = reg_col(batch, &se.temps, seg.n_inputs, r);
                            d.key_buf.push(c, arena, i);
                        }
                        match d.check(ts_v[i], *within_ns) {
                            DedupOutcome::Kept => true,
                            DedupOutcome::Duplicate => false,
                            DedupOutcome::Untracked => {
                                state_full += 1;
                                true
                            }
                        }
                    };
                    let before = sel_len;
                    narrow_by(&mut se.sel, &mut se.scratch_sel, &mut all, n, keep);
                    self.counters.filtered += (before - se.sel.len()) as u64;
                    self.counters.state_full += state_full;
                }
                Action::SampleEvery {
                    n: every,
                    by,
                    state,
                } => {
                    let before = sel_len;
                    if by.is_empty() {
                        let st = se.states[*state as usize].get_or_insert(StepState::Every(0));
                        let StepState::Every(count) = st else {
                            unreachable!("state kinds fixed at compile time")
                        };
                        let keep = |_: usize| -> bool {
                            let k = *count % *every == 0;
                            *count += 1;
                            k
                        };
                        narrow_by(&mut se.sel, &mut se.scratch_sel, &mut all, n, keep);
                    } else {
                        // hash(by...) % N == 0: the same records on every shard.
                        let hb = &mut self.hash_buf;
                        let temps = &se.temps;
                        let keep = |i: usize| -> bool {
                            hb.clear();
                            let mut ok = true;
                            for &(r, t) in by {
                                ok &= canonical_bytes(
                                    &Opnd::Reg(r),
                                    t,
                                    i,
                                    batch,
                                    temps,
                                    seg.n_inputs,
                                    syms,
                                    hb,
                                );
                            }
                            ok && xxh3_64(hb) % *every == 0
                        };
                        narrow_by(&mut se.sel, &mut se.scratch_sel, &mut all, n, keep);
                    }
                    self.counters.filtered += (before - se.sel.len()) as u64;
                }
                Action::SampleRate {
                    n: limit,
                    per_ns,
                    ts,
                    state,
                } => {
                    let st = se.states[*state as usize].get_or_insert(StepState::Rate {
                        interval: i64::MIN,
                        kept: 0,
                    });
                    let StepState::Rate { interval, kept } = st else {
                        unreachable!("state kinds fixed at compile time")
                    };
                    let (ts_col, _) = reg_col(batch, &se.temps, seg.n_inputs, *ts);
                    let ColumnData::I64(ts_v) = &ts_col.data else {
                        unreachable!("ts is a timestamp")
                    };
                    let mut late = 0;
                    let keep = |i: usize| -> bool {
                        if !ts_col.valid.get(i) {
                            late += 1;
                            return false;
                        }
                        let iv = ts_v[i].div_euclid(*per_ns);
                        if iv > *interval {
                            *interval = iv;
                            *kept = 0;
                        }
                        if iv < *interval {
                            late += 1;
                            return false;
                        }
                        *kept += 1;
                        *kept <= *limit
                    };
                    let before = sel_len;
                    narrow_by(&mut se.sel, &mut se.scratch_sel, &mut all, n, keep);
                    let dropped = (before - se.sel.len()) as u64;
                    self.counters.late += late;
                    self.counters.filtered += dropped - late;
                }
                Action::Window { next, .. } => {
                    let (w, _) = se.window.as_mut().expect("a window stage has its state");
                    let temps = &se.temps;
                    let col = |r: Reg| reg_col(batch, temps, seg.n_inputs, r);
                    let counts = if all {
                        w.add(&mut (0..n), &col, syms, now_ns as u64)
                    } else {
                        w.add(
                            &mut se.sel.iter().map(|&i| i as usize),
                            &col,
                            syms,
                            now_ns as u64,
                        )
                    };
                    self.counters.windowed += counts.added;
                    self.counters.late += counts.late;
                    self.counters.state_full += counts.state_full;
                    self.counters.overflow += counts.overflow;
                    // The window takes every record: nothing flows on.
                    se.sel.clear();
                    all = false;
                    window_next = Some(*next);
                }
            }
            let se = &self.segs[k];
            let after = if all { n } else { se.sel.len() };
            self.counters.stage_out[step.stage] += after as u64;
            if self.tap == Some((k, si)) && after > 0 {
                let rows = Rows {
                    batch,
                    temps: &se.temps,
                    n_inputs: seg.n_inputs,
                    sel: if all { Sel::All(n) } else { Sel::Idx(&se.sel) },
                    symbols,
                };
                out.tap(&chain.taps[step.stage].spec, &rows);
            }
        }
        if let Some(next) = window_next {
            self.close_windows(chain, k, next, CloseMode::Watermark, symbols, now_ns, out);
        }
    }
}

impl ExecCounters {
    fn clone_scalars(&self) -> ExecCounters {
        ExecCounters {
            overflow: self.overflow,
            div_zero: self.div_zero,
            filtered: self.filtered,
            windowed: self.windowed,
            late: self.late,
            state_full: self.state_full,
            stage_in: Vec::new(),
            stage_out: Vec::new(),
        }
    }
}

/// Keeps the selected rows where `pred` is `keep` (null never matches).
fn narrow(
    se: &mut SegExec,
    pred: &Opnd,
    batch: &Batch,
    n_inputs: usize,
    all: &mut bool,
    n: usize,
    keep: bool,
) {
    se.scratch_sel.clear();
    let sel = if *all { Sel::All(n) } else { Sel::Idx(&se.sel) };
    select_where(
        pred,
        sel,
        batch,
        &se.temps,
        n_inputs,
        keep,
        &mut se.scratch_sel,
    );
    std::mem::swap(&mut se.sel, &mut se.scratch_sel);
    *all = false;
}

/// Keeps the selected rows for which `keep` (called in row order) says so.
fn narrow_by(
    sel: &mut Vec<u32>,
    scratch: &mut Vec<u32>,
    all: &mut bool,
    n: usize,
    mut keep: impl FnMut(usize) -> bool,
) {
    scratch.clear();
    if *all {
        for i in 0..n {
            if keep(i) {
                scratch.push(i as u32);
            }
        }
    } else {
        for &i in sel.iter() {
            if keep(i as usize) {
                scratch.push(i);
            }
        }
    }
    std::mem::swap(sel, scratch);
    *all = false;
}

/// Appends to `out` the selected rows where `pred` is valid and equals
/// `want` (for `want == false`, also the null rows: a route keeps them).
fn select_where(
    pred: &Opnd,
    sel: Sel<'_>,
    batch: &Batch,
    temps: &[Temp],
    n_inputs: usize,
    want: bool,
    out: &mut Vec<u32>,
) {
    match pred {
        Opnd::Const(c) => {
            let v = c.bool().unwrap_or(false);
            if v == want {
                each!(sel, i, {
                    out.push(i as u32);
                });
            }
        }
        Opnd::Reg(r) => {
            let (c, _) = reg_col(batch, temps, n_inputs, *r);
            let ColumnData::Bool(v) = &c.data else {
                unreachable!("predicates are bool (type checked)")
            };
            let m = &c.valid;
            // NB: branch-free append; `out` has capacity batch_max.
            each!(sel, i, {
                let hit = m.get(i) && v[i];
                let take = if want { hit } else { !hit };
                if take {
                    out.push(i as u32);
                }
            });
        }
    }
}

macro_rules! num_src {
    ($batch:expr, $temps:expr, $n:expr, $op:expr, $variant:ident, $getc:ident, |$s:ident| $body:expr) => {
        match $op {
            Opnd::Reg(r) => {
                let (c, _) = reg_col($batch, $temps, $n, *r);
                let ColumnData::$variant(v) = &c.data else {
                    unreachable!("register types fixed at compile time")
                };
                let $s = Col {
                    v: &v[..],
                    m: &c.valid,
                };
                $body
            }
            Opnd::Const(k) => {
                let $s = K(k.$getc());
                $body
            }
        }
    };
}

macro_rules! text_src {
    ($batch:expr, $temps:expr, $n:expr, $syms:expr, $op:expr, |$s:ident| $body:expr) => {
        match $op {
            Opnd::Reg(r) => {
                let (c, arena) = reg_col($batch, $temps, $n, *r);
                match &c.data {
                    ColumnData::Sym(ids) => {
                        let $s = SymCol {
                            ids,
                            m: &c.valid,
                            symbols: $syms,
                        };
                        $body
                    }
                    ColumnData::Str(refs) => {
                        let $s = StrCol {
                            refs,
                            m: &c.valid,
                            arena,
                        };
                        $body
                    }
                    _ => unreachable!("text registers are symbol or string"),
                }
            }
            Opnd::Const(k) => {
                let $s = TextK(k.text());
                $body
            }
        }
    };
}

fn checked_i64(op: ArithOp) -> fn(i64, i64) -> Option<i64> {
    match op {
        ArithOp::Add => i64::checked_add,
        ArithOp::Sub => i64::checked_sub,
        ArithOp::Mul => i64::checked_mul,
        ArithOp::Div => i64::checked_div,
        ArithOp::Rem => i64::checked_rem,
    }
}

fn checked_u64(op: ArithOp) -> fn(u64, u64) -> Option<u64> {
    match op {
        ArithOp::Add => u64::checked_add,
        ArithOp::Sub => u64::checked_sub,
        ArithOp::Mul => u64::checked_mul,
        ArithOp::Div => u64::checked_div,
        ArithOp::Rem => u64::checked_rem,
    }
}

fn float_op(op: ArithOp) -> fn(f64, f64) -> Option<f64> {
    match op {
        ArithOp::Add => |a, b| Some(a + b),
        ArithOp::Sub => |a, b| Some(a - b),
        ArithOp::Mul => |a, b| Some(a * b),
        ArithOp::Div => kernels::fdiv,
        ArithOp::Rem => kernels::frem,
    }
}

/// Counts refused unsigned results: division and remainder refuse only a
/// zero divisor, the others only overflow.
fn count_refused_u64(op: ArithOp, refused: u64, c: &mut ExecCounters) {
    if matches!(op, ArithOp::Div | ArithOp::Rem) {
        c.div_zero += refused;
    } else {
        c.overflow += refused;
    }
}

#[allow(clippy::too_many_arguments)]
fn exec_instr(
    ins: &Instr,
    sel: Sel<'_>,
    batch: &Batch,
    temps: &mut [Temp],
    n: usize,
    symbols: &mut Interner,
    now_ns: i64,
    hash_buf: &mut Vec<u8>,
    counters: &mut ExecCounters,
    memos: &mut [Vec<u32>],
) {
    let dst = dst_of(ins) as usize - n;
    // Single assignment: the destination is never an operand, so it can be
    // taken out while the operands are read.
    let mut out = temps[dst]
        .col
        .take()
        .expect("each register written once per run");
    let mut arena = std::mem::take(&mut temps[dst].arena);
    match ins {
        Instr::TableCol {
            row,
            table,
            col,
            memo,
            ..
        } => {
            let (rc, _) = reg_col(batch, temps, n, *row);
            table_col(
                sel,
                rc,
                table,
                *col,
                &mut memos[*memo as usize],
                symbols,
                &mut out,
                &mut arena,
            );
            temps[dst].col = Some(out);
            temps[dst].arena = arena;
            return;
        }
        Instr::Lookup {
            a,
            a_ty,
            table,
            memo,
            ..
        } => {
            let Opnd::Reg(r) = a else {
                unreachable!("lookup keys are registers (compile)")
            };
            let (ac, aa) = reg_col(batch, temps, n, *r);
            lookup(
                sel,
                ac,
                aa,
                *a_ty,
                table,
                &mut memos[*memo as usize],
                symbols,
                &mut out,
            );
            temps[dst].col = Some(out);
            temps[dst].arena = arena;
            return;
        }
        _ => {}
    }
    {
        let syms: &Interner = symbols;
        let temps: &[Temp] = temps;
        match ins {
            Instr::Arith { op, ty, a, b, .. } => match ty {
                NumTy::I64 => {
                    let (o, m) = kernels::out_i64(&mut out);
                    let f = checked_i64(*op);
                    let refused = num_src!(batch, temps, n, a, I64, i64, |x| num_src!(
                        batch,
                        temps,
                        n,
                        b,
                        I64,
                        i64,
                        |y| kernels::binary(sel, &x, &y, o, m, f)
                    ));
                    // checked_div/rem refuse both /0 and MIN/-1: tell them apart.
                    let by_zero = if matches!(op, ArithOp::Div | ArithOp::Rem) {
                        num_src!(batch, temps, n, b, I64, i64, |y| count_zero(
                            sel,
                            &y,
                            0i64,
                            &x_valid(batch, temps, n, a)
                        ))
                    } else {
                        0
                    };
                    counters.div_zero += by_zero;
                    counters.overflow += refused - by_zero;
                }
                NumTy::U64 => {
                    let (o, m) = kernels::out_u64(&mut out);
                    let f = checked_u64(*op);
                    let refused = num_src!(batch, temps, n, a, U64, u64, |x| num_src!(
                        batch,
                        temps,
                        n,
                        b,
                        U64,
                        u64,
                        |y| kernels::binary(sel, &x, &y, o, m, f)
                    ));
                    count_refused_u64(*op, refused, counters);
                }
                NumTy::F64 => {
                    let (o, m) = kernels::out_f64(&mut out);
                    let f = float_op(*op);
                    let refused = num_src!(batch, temps, n, a, F64, f64, |x| num_src!(
                        batch,
                        temps,
                        n,
                        b,
                        F64,
                        f64,
                        |y| kernels::binary(sel, &x, &y, o, m, f)
                    ));
                    // Float arithmetic refuses only a zero divisor.
                    counters.div_zero += refused;
                }
            },
            Instr::Neg { ty, a, .. } => match ty {
                NumTy::I64 => {
                    let (o, m) = kernels::out_i64(&mut out);
                    counters.overflow +=
                        num_src!(batch, temps, n, a, I64, i64, |x| kernels::unary(
                            sel,
                            &x,
                            o,
                            m,
                            i64::checked_neg
                        ));
                }
                NumTy::F64 => {
                    let (o, m) = kernels::out_f64(&mut out);
                    num_src!(batch, temps, n, a, F64, f64, |x| kernels::unary(
                        sel,
                        &x,
                        o,
                        m,
                        |v: f64| Some(-v)
                    ));
                }
                NumTy::U64 => unreachable!("u64 is cast to i64 before negation"),
            },
            Instr::Cast { op, a, .. } => match op {
                CastOp::I64ToF64 => {
                    let (o, m) = kernels::out_f64(&mut out);
                    num_src!(batch, temps, n, a, I64, i64, |x| kernels::unary(
                        sel,
                        &x,
                        o,
                        m,
                        |v: i64| Some(v as f64)
                    ));
                }
                CastOp::U64ToF64 => {
                    let (o, m) = kernels::out_f64(&mut out);
                    num_src!(batch, temps, n, a, U64, u64, |x| kernels::unary(
                        sel,
                        &x,
                        o,
                        m,
                        |v: u64| Some(v as f64)
                    ));
                }
                CastOp::U64ToI64 => {
                    let (o, m) = kernels::out_i64(&mut out);
                    counters.overflow +=
                        num_src!(batch, temps, n, a, U64, u64, |x| kernels::unary(
                            sel,
                            &x,
                            o,
                            m,
                            |v: u64| i64::try_from(v).ok()
                        ));
                }
                CastOp::I64ToU64 => {
                    let (o, m) = kernels::out_u64(&mut out);
                    counters.overflow +=
                        num_src!(batch, temps, n, a, I64, i64, |x| kernels::unary(
                            sel,
                            &x,
                            o,
                            m,
                            |v: i64| u64::try_from(v).ok()
                        ));
                }
            },
            Instr::Cmp { op, kind, a, b, .. } => {
                let (o, m) = kernels::out_bool(&mut out);
                compare(*op, *kind, a, b, sel, batch, temps, n, syms, o, m);
            }
            Instr::Present { a, negate, .. } => {
                let (o, m) = kernels::out_bool(&mut out);
                let neg = *negate;
                match a {
                    Opnd::Const(c) => {
                        let p = !matches!(c, Const::Null);
                        each!(sel, i, {
                            o[i] = p != neg;
                            m.set(i, true);
                        });
                    }
                    Opnd::Reg(r) => {
                        let (c, _) = reg_col(batch, temps, n, *r);
                        each!(sel, i, {
                            o[i] = c.valid.get(i) != neg;
                            m.set(i, true);
                        });
                    }
                }
            }
            Instr::And { a, b, .. } | Instr::Or { a, b, .. } => {
                let is_and = matches!(ins, Instr::And { .. });
                let (o, m) = kernels::out_bool(&mut out);
                num_src!(batch, temps, n, a, Bool, bool, |x| num_src!(
                    batch,
                    temps,
                    n,
                    b,
                    Bool,
                    bool,
                    |y| kernels::logic(sel, &x, &y, o, m, is_and)
                ));
            }
            Instr::Not { a, .. } => {
                let (o, m) = kernels::out_bool(&mut out);
                num_src!(batch, temps, n, a, Bool, bool, |x| kernels::unary(
                    sel,
                    &x,
                    o,
                    m,
                    |v: bool| Some(!v)
                ));
            }
            Instr::Abs { ty, a, .. } => match ty {
                NumTy::I64 => {
                    let (o, m) = kernels::out_i64(&mut out);
                    counters.overflow +=
                        num_src!(batch, temps, n, a, I64, i64, |x| kernels::unary(
                            sel,
                            &x,
                            o,
                            m,
                            i64::checked_abs
                        ));
                }
                _ => {
                    let (o, m) = kernels::out_f64(&mut out);
                    num_src!(batch, temps, n, a, F64, f64, |x| kernels::unary(
                        sel,
                        &x,
                        o,
                        m,
                        |v: f64| Some(v.abs())
                    ));
                }
            },
            Instr::Round { op, a, .. } => {
                let (o, m) = kernels::out_f64(&mut out);
                let f: fn(f64) -> Option<f64> = match op {
                    RoundOp::Round => |v| Some(v.round()),
                    RoundOp::Floor => |v| Some(v.floor()),
                    RoundOp::Ceil => |v| Some(v.ceil()),
                };
                num_src!(batch, temps, n, a, F64, f64, |x| kernels::unary(
                    sel, &x, o, m, f
                ));
            }
            Instr::MinMax { max, ty, args, .. } => {
                min_max(*max, *ty, args, sel, batch, temps, n, &mut out);
            }
            Instr::Len { a, .. } => {
                let (o, m) = kernels::out_i64(&mut out);
                text_src!(batch, temps, n, syms, a, |x| {
                    each!(sel, i, {
                        if x.valid(i) {
                            o[i] = kernels::char_count(x.get(i));
                            m.set(i, true);
                        } else {
                            m.set(i, false);
                        }
                    })
                });
            }
            Instr::Case { upper, a, .. } => {
                let up = *upper;
                let (o, m) = out_str(&mut out);
                text_src!(batch, temps, n, syms, a, |x| kernels::text_map(
                    sel,
                    &x,
                    o,
                    m,
                    &mut arena,
                    |s, out| { kernels::change_case(s, out, up) }
                ));
            }
            Instr::StartsWith { a, b, .. } | Instr::Contains { a, b, .. } => {
                let contains = matches!(ins, Instr::Contains { .. });
                let (o, m) = kernels::out_bool(&mut out);
                text_src!(batch, temps, n, syms, a, |x| text_src!(
                    batch,
                    temps,
                    n,
                    syms,
                    b,
                    |y| {
                        kernels::compare_text(sel, &x, &y, o, m, |s: &[u8], p: &[u8]| {
                            if contains {
                                memchr::memmem::find(s, p).is_some()
                            } else {
                                s.starts_with(p)
                            }
                        })
                    }
                ));
            }
            Instr::If { c, a, b, .. } => {
                if_select(c, a, b, sel, batch, temps, n, syms, &mut out, &mut arena);
            }
            Instr::Hash { args, .. } => {
                let (o, m) = kernels::out_u64(&mut out);
                each!(sel, i, {
                    hash_buf.clear();
                    let mut ok = true;
                    for (a, t) in args {
                        ok &= canonical_bytes(a, *t, i, batch, temps, n, syms, hash_buf);
                    }
                    if ok {
                        o[i] = xxh3_64(hash_buf);
                    }
                    m.set(i, ok);
                });
            }
            Instr::Now { .. } => {
                let (o, m) = kernels::out_i64(&mut out);
                each!(sel, i, {
                    o[i] = now_ns;
                    m.set(i, true);
                });
            }
            Instr::InList { a, items, .. } => {
                let (o, m) = kernels::out_bool(&mut out);
                in_list(a, items, sel, batch, temps, n, syms, o, m);
            }
            Instr::Copy { a, .. } => copy(a, sel, batch, temps, n, syms, &mut out, &mut arena),
            Instr::Lookup { .. } | Instr::TableCol { .. } => unreachable!("handled above"),
        }
    }
    temps[dst].col = Some(out);
    temps[dst].arena = arena;
}

/// Which rows of an operand are valid, for telling division by zero from
/// overflow.
enum Valid<'a> {
    All,
    None,
    Rows(&'a Bitmap),
}

fn x_valid<'a>(batch: &'a Batch, temps: &'a [Temp], n: usize, a: &'a Opnd) -> Valid<'a> {
    match a {
        Opnd::Reg(r) => Valid::Rows(&reg_col(batch, temps, n, *r).0.valid),
        Opnd::Const(Const::Null) => Valid::None,
        Opnd::Const(_) => Valid::All,
    }
}

/// Rows where the divisor is a valid zero and the dividend valid.
fn count_zero(sel: Sel<'_>, y: &impl kernels::Src<i64>, zero: i64, xm: &Valid<'_>) -> u64 {
    let mut c = 0;
    each!(sel, i, {
        let x_ok = match xm {
            Valid::All => true,
            Valid::None => false,
            Valid::Rows(m) => m.get(i),
        };
        if x_ok && y.valid(i) && y.get(i) == zero {
            c += 1;
        }
    });
    c
}

fn dst_of(ins: &Instr) -> Reg {
    match ins {
        Instr::Arith { dst, .. }
        | Instr::Neg { dst, .. }
        | Instr::Cast { dst, .. }
        | Instr::Cmp { dst, .. }
        | Instr::Present { dst, .. }
        | Instr::And { dst, .. }
        | Instr::Or { dst, .. }
        | Instr::Not { dst, .. }
        | Instr::Abs { dst, .. }
        | Instr::Round { dst, .. }
        | Instr::MinMax { dst, .. }
        | Instr::Len { dst, .. }
        | Instr::Case { dst, .. }
        | Instr::StartsWith { dst, .. }
        | Instr::Contains { dst, .. }
        | Instr::If { dst, .. }
        | Instr::Hash { dst, .. }
        | Instr::Now { dst }
        | Instr::InList { dst, .. }
        | Instr::Copy { dst, .. }
        | Instr::Lookup { dst, .. }
        | Instr::TableCol { dst, .. } => *dst,
    }
}

/// `out` = the row of each selected key in `table` (null on a miss).
#[allow(clippy::too_many_arguments)]
fn lookup(
    sel: Sel<'_>,
    key: &Column,
    arena: &[u8],
    key_ty: FieldType,
    table: &Table,
    memo: &mut Vec<u32>,
    symbols: &Interner,
    out: &mut Column,
) {
    let (o, m) = kernels::out_u64(out);
    let kt = table.key_type;
    let found = |k: Option<KeyRef<'_>>| k.and_then(|k| table.find(k));
    each!(sel, i, {
        let row = if !key.valid.get(i) {
            None
        } else {
            match (&key.data, key_ty) {
                (ColumnData::I64(v), _) => found(int_lookup(kt, v[i] as i128)),
                (ColumnData::U64(v), _) => found(int_lookup(kt, v[i] as i128)),
                (ColumnData::F64(v), _) => found(float_lookup(kt, v[i])),
                (ColumnData::Bool(v), _) => {
                    found((kt == FieldType::Bool).then_some(KeyRef::Bool(v[i])))
                }
                (ColumnData::Str(v), _) => {
                    found(kt.is_text().then(|| KeyRef::Text(v[i].get(arena))))
                }
                (ColumnData::Sym(v), _) => {
                    // Once per symbol per shard: ids map to rows.
                    let id = v[i] as usize;
                    if memo.len() <= id {
                        memo.resize(symbols.len().max(id + 1), UNSEEN);
                    }
                    if memo[id] == UNSEEN {
                        let r = found(kt.is_text().then(|| KeyRef::Text(symbols.resolve(v[i]))));
                        memo[id] = r.unwrap_or(MISS);
                    }
                    (memo[id] != MISS).then_some(memo[id])
                }
            }
        };
        match row {
            Some(r) => {
                o[i] = r as u64;
                m.set(i, true);
            }
            None => m.set(i, false),
        }
    });
}

/// `out` = column `col` of `table` at each selected row index (null where
/// the index is). Symbol cells are interned once per table row per shard.
#[allow(clippy::too_many_arguments)]
fn table_col(
    sel: Sel<'_>,
    rows: &Column,
    table: &Table,
    col: usize,
    memo: &mut Vec<u32>,
    symbols: &mut Interner,
    out: &mut Column,
    arena: &mut Vec<u8>,
) {
    let ColumnData::U64(r) = &rows.data else {
        unreachable!("row registers are u64")
    };
    let ty = out.ty;
    let Column { data, valid, .. } = out;
    each!(sel, i, {
        let cell = if rows.valid.get(i) {
            table.cell(col, r[i] as u32)
        } else {
            Cell::Null
        };
        let ok = match (cell, &mut *data) {
            (Cell::Null, _) => false,
            (Cell::I64(v), ColumnData::I64(o)) => {
                o[i] = v;
                true
            }
            (Cell::U64(v), ColumnData::U64(o)) => {
                o[i] = v;
                true
            }
            (Cell::F64(v), ColumnData::F64(o)) => {
                o[i] = v;
                true
            }
            (Cell::Bool(v), ColumnData::Bool(o)) => {
                o[i] = v;
                true
            }
            (Cell::Text(off, len), ColumnData::Sym(o)) => {
                let row = r[i] as usize;
                if memo.len() <= row {
                    memo.resize(table.len().max(row + 1), UNSEEN);
                }
                if memo[row] == UNSEEN {
                    // A full symbol table leaves the value null.
                    memo[row] = symbols.intern(table.text(off, len)).unwrap_or(MISS);
                }
                o[i] = memo[row];
                memo[row] != MISS
            }
            (Cell::Text(off, len), ColumnData::Str(o)) => {
                let s = table.text(off, len);
                let at = arena.len();
                arena.extend_from_slice(s);
                o[i] = StrRef {
                    off: at as u32,
                    len: s.len() as u32,
                };
                true
            }
            _ => unreachable!("table column {col} holds {ty} values"),
        };
        valid.set(i, ok);
    });
}

fn out_str(c: &mut Column) -> (&mut [StrRef], &mut Bitmap) {
    match &mut c.data {
        ColumnData::Str(v) => (v, &mut c.valid),
        _ => unreachable!("register types fixed at compile time"),
    }
}

#[allow(clippy::too_many_arguments)]
fn compare(
    op: CmpOp,
    kind: CmpKind,
    a: &Opnd,
    b: &Opnd,
    sel: Sel<'_>,
    batch: &Batch,
    temps: &[Temp],
    n: usize,
    syms: &Interner,
    o: &mut [bool],
    m: &mut Bitmap,
) {
    use std::cmp::Ordering;
    let test = move |ord: Ordering| match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
    };
    match kind {
        CmpKind::I64 => num_src!(batch, temps, n, a, I64, i64, |x| num_src!(
            batch,
            temps,
            n,
            b,
            I64,
            i64,
            |y| kernels::compare(sel, &x, &y, o, m, |p: i64, q: i64| test(p.cmp(&q)))
        )),
        CmpKind::U64 => num_src!(batch, temps, n, a, U64, u64, |x| num_src!(
            batch,
            temps,
            n,
            b,
            U64,
            u64,
            |y| kernels::compare(sel, &x, &y, o, m, |p: u64, q: u64| test(p.cmp(&q)))
        )),
        CmpKind::I64U64 => num_src!(batch, temps, n, a, I64, i64, |x| num_src!(
            batch,
            temps,
            n,
            b,
            U64,
            u64,
            |y| {
                kernels::compare(sel, &x, &y, o, m, |p: i64, q: u64| {
                    test((p as i128).cmp(&(q as i128)))
                })
            }
        )),
        CmpKind::U64I64 => num_src!(batch, temps, n, a, U64, u64, |x| num_src!(
            batch,
            temps,
            n,
            b,
            I64,
            i64,
            |y| {
                kernels::compare(sel, &x, &y, o, m, |p: u64, q: i64| {
                    test((p as i128).cmp(&(q as i128)))
                })
            }
        )),
        CmpKind::F64 => num_src!(batch, temps, n, a, F64, f64, |x| num_src!(
            batch,
            temps,
            n,
            b,
            F64,
            f64,
            |y| {
                // NaN compares false, `!=` included.
                kernels::compare(sel, &x, &y, o, m, |p: f64, q: f64| {
                    p.partial_cmp(&q).is_some_and(test)
                })
            }
        )),
        CmpKind::Bool => num_src!(batch, temps, n, a, Bool, bool, |x| num_src!(
            batch,
            temps,
            n,
            b,
            Bool,
            bool,
            |y| kernels::compare(sel, &x, &y, o, m, |p: bool, q: bool| test(p.cmp(&q)))
        )),
        CmpKind::Text => {
            // Symbol against a literal: one lookup per batch, then ids.
            if let (Opnd::Reg(r), Opnd::Const(Const::Str(lit))) = (a, b)
                && matches!(op, CmpOp::Eq | CmpOp::Ne)
                && let (c, _) = reg_col(batch, temps, n, *r)
                && let ColumnData::Sym(ids) = &c.data
            {
                let want = syms.lookup(lit);
                let eq = op == CmpOp::Eq;
                each!(sel, i, {
                    o[i] = c.valid.get(i) && ((Some(ids[i]) == want) == eq);
                    m.set(i, true);
                });
                return;
            }
            text_src!(batch, temps, n, syms, a, |x| text_src!(
                batch,
                temps,
                n,
                syms,
                b,
                |y| {
                    kernels::compare_text(sel, &x, &y, o, m, |p: &[u8], q: &[u8]| test(p.cmp(q)))
                }
            ))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn min_max(
    max: bool,
    ty: NumTy,
    args: &[Opnd],
    sel: Sel<'_>,
    batch: &Batch,
    temps: &[Temp],
    n: usize,
    out: &mut Column,
) {
    // Fold pairwise into the destination: first arg copied, then combined.
    match ty {
        NumTy::F64 => {
            let (o, m) = kernels::out_f64(out);
            num_src!(batch, temps, n, &args[0], F64, f64, |x| kernels::unary(
                sel, &x, o, m, Some
            ));
            for a in &args[1..] {
                num_src!(batch, temps, n, a, F64, f64, |y| {
                    each!(sel, i, {
                        if m.get(i) && y.valid(i) {
                            o[i] = if max {
                                kernels::fmax(o[i], y.get(i))
                            } else {
                                kernels::fmin(o[i], y.get(i))
                            };
                        } else {
                            m.set(i, false);
                        }
                    })
                });
            }
        }
        NumTy::I64 => {
            let (o, m) = kernels::out_i64(out);
            num_src!(batch, temps, n, &args[0], I64, i64, |x| kernels::unary(
                sel, &x, o, m, Some
            ));
            for a in &args[1..] {
                num_src!(batch, temps, n, a, I64, i64, |y| {
                    each!(sel, i, {
                        if m.get(i) && y.valid(i) {
                            o[i] = if max {
                                o[i].max(y.get(i))
                            } else {
                                o[i].min(y.get(i))
                            };
                        } else {
                            m.set(i, false);
                        }
                    })
                });
            }
        }
        NumTy::U64 => {
            let (o, m) = kernels::out_u64(out);
            num_src!(batch, temps, n, &args[0], U64, u64, |x| kernels::unary(
                sel, &x, o, m, Some
            ));
            for a in &args[1..] {
                num_src!(batch, temps, n, a, U64, u64, |y| {
                    each!(sel, i, {
                        if m.get(i) && y.valid(i) {
                            o[i] = if max {
                                o[i].max(y.get(i))
                            } else {
                                o[i].min(y.get(i))
                            };
                        } else {
                            m.set(i, false);
                        }
                    })
                });
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn in_list(
    a: &Opnd,
    items: &ListItems,
    sel: Sel<'_>,
    batch: &Batch,
    temps: &[Temp],
    n: usize,
    syms: &Interner,
    o: &mut [bool],
    m: &mut Bitmap,
) {
    match items {
        ListItems::I64(v) => num_src!(batch, temps, n, a, I64, i64, |x| each!(sel, i, {
            o[i] = x.valid(i) && v.contains(&x.get(i));
            m.set(i, true);
        })),
        ListItems::U64(v) => num_src!(batch, temps, n, a, U64, u64, |x| each!(sel, i, {
            o[i] = x.valid(i) && v.contains(&x.get(i));
            m.set(i, true);
        })),
        ListItems::F64(v) => num_src!(batch, temps, n, a, F64, f64, |x| each!(sel, i, {
            o[i] = x.valid(i) && v.contains(&x.get(i));
            m.set(i, true);
        })),
        ListItems::Bool(v) => num_src!(batch, temps, n, a, Bool, bool, |x| each!(sel, i, {
            o[i] = x.valid(i) && v.contains(&x.get(i));
            m.set(i, true);
        })),
        ListItems::Text(v) => text_src!(batch, temps, n, syms, a, |x| each!(sel, i, {
            o[i] = x.valid(i) && v.iter().any(|t| **t == *x.get(i));
            m.set(i, true);
        })),
    }
}

#[allow(clippy::too_many_arguments)]
fn if_select(
    c: &Opnd,
    a: &Opnd,
    b: &Opnd,
    sel: Sel<'_>,
    batch: &Batch,
    temps: &[Temp],
    n: usize,
    syms: &Interner,
    out: &mut Column,
    arena: &mut Vec<u8>,
) {
    let cond = |i: usize| -> bool {
        match c {
            Opnd::Const(k) => k.bool().unwrap_or(false),
            Opnd::Reg(r) => {
                let (col, _) = reg_col(batch, temps, n, *r);
                let ColumnData::Bool(v) = &col.data else {
                    unreachable!()
                };
                col.valid.get(i) && v[i]
            }
        }
    };
    macro_rules! pick {
        ($variant:ident, $getc:ident, $outf:path) => {{
            let (o, m) = $outf(out);
            num_src!(batch, temps, n, a, $variant, $getc, |x| num_src!(
                batch,
                temps,
                n,
                b,
                $variant,
                $getc,
                |y| {
                    each!(sel, i, {
                        let (ok, v) = if cond(i) {
                            (x.valid(i), x.get(i))
                        } else {
                            (y.valid(i), y.get(i))
                        };
                        if ok {
                            o[i] = v;
                        }
                        m.set(i, ok);
                    })
                }
            ))
        }};
    }
    match out.ty {
        FieldType::I64 | FieldType::Timestamp => pick!(I64, i64, kernels::out_i64),
        FieldType::U64 => pick!(U64, u64, kernels::out_u64),
        FieldType::F64 => pick!(F64, f64, kernels::out_f64),
        FieldType::Bool => pick!(Bool, bool, kernels::out_bool),
        FieldType::Symbol => {
            // Both branches are symbols of this shard: pick ids.
            let ColumnData::Sym(o) = &mut out.data else {
                unreachable!()
            };
            let m = &mut out.valid;
            let get = |op: &Opnd, i: usize| -> Option<u32> {
                match op {
                    Opnd::Reg(r) => {
                        let (col, _) = reg_col(batch, temps, n, *r);
                        let ColumnData::Sym(ids) = &col.data else {
                            unreachable!()
                        };
                        col.valid.get(i).then(|| ids[i])
                    }
                    Opnd::Const(_) => None,
                }
            };
            each!(sel, i, {
                let v = if cond(i) { get(a, i) } else { get(b, i) };
                if let Some(id) = v {
                    o[i] = id;
                }
                m.set(i, v.is_some());
            });
        }
        FieldType::Str => {
            let (o, m) = out_str(out);
            text_src!(batch, temps, n, syms, a, |x| text_src!(
                batch,
                temps,
                n,
                syms,
                b,
                |y| {
                    each!(sel, i, {
                        let (ok, s) = if cond(i) {
                            (x.valid(i), x.get(i))
                        } else {
                            (y.valid(i), y.get(i))
                        };
                        if ok {
                            let off = arena.len();
                            arena.extend_from_slice(s);
                            o[i] = StrRef {
                                off: off as u32,
                                len: s.len() as u32,
                            };
                        }
                        m.set(i, ok);
                    })
                }
            ))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn copy(
    a: &Opnd,
    sel: Sel<'_>,
    batch: &Batch,
    temps: &[Temp],
    n: usize,
    syms: &Interner,
    out: &mut Column,
    arena: &mut Vec<u8>,
) {
    match out.ty {
        FieldType::I64 | FieldType::Timestamp => {
            let (o, m) = kernels::out_i64(out);
            num_src!(batch, temps, n, a, I64, i64, |x| kernels::unary(
                sel, &x, o, m, Some
            ));
        }
        FieldType::U64 => {
            let (o, m) = kernels::out_u64(out);
            num_src!(batch, temps, n, a, U64, u64, |x| kernels::unary(
                sel, &x, o, m, Some
            ));
        }
        FieldType::F64 => {
            let (o, m) = kernels::out_f64(out);
            num_src!(batch, temps, n, a, F64, f64, |x| kernels::unary(
                sel, &x, o, m, Some
            ));
        }
        FieldType::Bool => {
            let (o, m) = kernels::out_bool(out);
            num_src!(batch, temps, n, a, Bool, bool, |x| kernels::unary(
                sel, &x, o, m, Some
            ));
        }
        FieldType::Symbol => {
            let ColumnData::Sym(o) = &mut out.data else {
                unreachable!()
            };
            let Opnd::Reg(r) = a else {
                unreachable!("symbol constants do not exist: literals are strings")
            };
            let (col, _) = reg_col(batch, temps, n, *r);
            let ColumnData::Sym(ids) = &col.data else {
                unreachable!()
            };
            each!(sel, i, {
                o[i] = ids[i];
                out.valid.set(i, col.valid.get(i));
            });
        }
        FieldType::Str => {
            let (o, m) = out_str(out);
            text_src!(batch, temps, n, syms, a, |x| kernels::text_map(
                sel,
                &x,
                o,
                m,
                arena,
                |s, out| { out.extend_from_slice(s) }
            ));
        }
    }
}

/// An f64's bits for hashing: every NaN hashes as the one quiet NaN, so
/// `hash()` does not depend on how a machine produced its NaN.
#[inline]
fn canonical_f64(v: f64) -> f64 {
    if v.is_nan() { f64::NAN } else { v }
}

/// Appends the canonical bytes of operand `a` at row `i` (little-endian
/// numbers, UTF-8 text, one byte for bools); false if it is null.
#[allow(clippy::too_many_arguments)]
fn canonical_bytes(
    a: &Opnd,
    t: FieldType,
    i: usize,
    batch: &Batch,
    temps: &[Temp],
    n: usize,
    syms: &Interner,
    buf: &mut Vec<u8>,
) -> bool {
    match a {
        Opnd::Const(c) => match c {
            Const::Null => false,
            Const::I64(v) => {
                buf.extend_from_slice(&v.to_le_bytes());
                true
            }
            Const::U64(v) => {
                buf.extend_from_slice(&v.to_le_bytes());
                true
            }
            Const::F64(v) => {
                buf.extend_from_slice(&canonical_f64(*v).to_le_bytes());
                true
            }
            Const::Bool(v) => {
                buf.push(*v as u8);
                true
            }
            Const::Str(s) => {
                buf.extend_from_slice(s);
                true
            }
        },
        Opnd::Reg(r) => {
            let (c, arena) = reg_col(batch, temps, n, *r);
            if !c.valid.get(i) {
                return false;
            }
            let _ = t;
            match &c.data {
                ColumnData::I64(v) => buf.extend_from_slice(&v[i].to_le_bytes()),
                ColumnData::U64(v) => buf.extend_from_slice(&v[i].to_le_bytes()),
                ColumnData::F64(v) => buf.extend_from_slice(&canonical_f64(v[i]).to_le_bytes()),
                ColumnData::Bool(v) => buf.push(v[i] as u8),
                ColumnData::Sym(v) => buf.extend_from_slice(syms.resolve(v[i])),
                ColumnData::Str(v) => buf.extend_from_slice(v[i].get(arena)),
            }
            true
        }
    }
}
