//! Where routed calls go: the stubs handed out to routed functions, each context's route
//! table, the copies each function holds, and the resolver the stubs' slow entries call.
//!
//! Context: the resolver runs wherever a routed call is made (the caller's context, a
//! function's stack); [`finished`] on a function's own stack at its end, [`abandoned`] in
//! the caller's context when a paused function is discarded. None of it runs in inger's
//! signal handler.
//!
//! # Contexts and their tables
//!
//! Every context finds its route table through one thread-local word (see
//! `arch::libset`). A thread's own context (outside any function) uses [`ORIGINAL`], whose
//! entry for each routed function is the original library's. A function that made no routed
//! call yet sees [`FIRST_USE`](crate::arch::libset::FIRST_USE) (its TLS block's initial
//! image), whose entries lead to the resolver: that call takes a copy of the library for the
//! function, fills the function's own table with the copy's addresses for every routed
//! function of that library, and points the function's TLS word at its table. From then on a
//! routed call costs the stub's three instructions. The table and the held copies live in a
//! [`Context`] that the function's control block points to (`Lpf::libset`); contexts are
//! pooled, so taking a pooled copy allocates nothing.
//!
//! With shared thread-local storage (the fallback where glibc's internals were not found)
//! one TLS word serves the thread and every function on it, so it is never cached: every
//! routed call goes through the resolver, which finds the running function's context
//! through its control block (correct, and about a hundred nanoseconds per call).
//!
//! # Rules
//!
//! 1. A stub is assigned once, to one function of one library (its offset from the
//!    library's load bias), before any global offset table entry points at it; its
//!    [`ORIGINAL`] entry and its owner are written first.
//! 2. A context's table and held list are touched only by the function that owns it (its
//!    code, on whatever thread runs it) and, once it has finished or been discarded, by the
//!    code that releases it.
//! 3. A function holds at most one copy of each libset, from its first use to its end.

use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

use super::Shared;
use crate::arch::libset::{self as stubs, FIRST_USE, MAX_ROUTES, RouteTable};
use crate::error::Error;
use crate::runtime::{Lpf, RuntimeSection, with_running, yield_without_unwinding};
use crate::sys::signal::{abort_with, write_stderr};

/// The route table of contexts outside any function: each assigned entry is the original
/// library's address of its function (unassigned entries are slow entries, never reached).
static ORIGINAL: RouteTable = RouteTable::new();
/// The libset each stub belongs to (null: unassigned).
static OWNER: [AtomicPtr<Shared>; MAX_ROUTES] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_ROUTES];
/// The offset of each stub's function from its library's load bias.
static OFFSET: [AtomicUsize; MAX_ROUTES] = [const { AtomicUsize::new(0) }; MAX_ROUTES];
/// How many stubs were handed out; the lock serialises assignments.
static ASSIGNED: Mutex<usize> = Mutex::new(0);
/// Whether contexts may cache their table in their TLS word (private TLS).
static CACHE: AtomicBool = AtomicBool::new(false);
/// Released contexts, for reuse.
static CONTEXTS: Mutex<Vec<Box<Context>>> = Mutex::new(Vec::new());

/// Makes the stubs usable: installs the resolver and fills the first-use and original
/// tables. Call before any routing, outside any function.
pub(crate) fn init() {
    stubs::init(resolve);
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for (index, entry) in ORIGINAL.0.iter().enumerate() {
            entry.store(stubs::slow_entry(index), Relaxed);
        }
        CACHE.store(crate::runtime::private_tls().is_some(), Relaxed);
    });
}

/// The stub that routes the function at `offset` of `libset`'s library, assigning one if it
/// has none (rule 1). Called with the routing lock held.
///
/// # Errors
/// [`Error::TooManyRoutes`] when every stub is taken.
pub(crate) fn stub_for(libset: &'static Shared, offset: usize) -> Result<usize, Error> {
    let mut state = libset.lock();
    if let Some(&index) = state.stub_by_offset.get(&offset) {
        return Ok(index);
    }
    let mut assigned = ASSIGNED.lock().unwrap_or_else(|p| p.into_inner());
    if *assigned == MAX_ROUTES {
        return Err(Error::TooManyRoutes { limit: MAX_ROUTES });
    }
    let index = *assigned;
    *assigned += 1;
    OFFSET[index].store(offset, Relaxed);
    ORIGINAL.0[index].store(libset.original_bias + offset, Relaxed);
    OWNER[index].store(libset as *const Shared as *mut Shared, Relaxed);
    // Stores are seen in order on x86-64: whoever reaches the stub through the entry the
    // caller writes next sees these.
    core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
    state.stub_by_offset.insert(offset, index);
    state.stubs.push(index);
    Ok(index)
}

/// The address a routed entry holds for stub `index`.
pub(crate) fn stub_address(index: usize) -> usize {
    stubs::stub_address(index)
}

/// Whether `address` is one of the stubs.
pub(crate) fn is_stub(address: usize) -> bool {
    stubs::stub_index(address).is_some()
}

/// A copy a function holds.
#[derive(Clone, Copy)]
pub(crate) struct Held {
    pub(crate) libset: &'static Shared,
    /// Its index in the libset's list of copies.
    pub(crate) copy: usize,
    pub(crate) bias: usize,
    pub(crate) handle: crate::sys::dynlib::Handle,
}

/// One function's routes and held copies (see the module docs).
pub(crate) struct Context {
    routes: RouteTable,
    held: Vec<Held>,
}

impl Context {
    /// A context from the pool, or a new one whose routes are all first uses.
    fn take() -> Box<Context> {
        let pooled = CONTEXTS.lock().unwrap_or_else(|p| p.into_inner()).pop();
        pooled.unwrap_or_else(|| {
            let context = Box::new(Context {
                routes: RouteTable::new(),
                held: Vec::with_capacity(4),
            });
            for (entry, first) in context.routes.0.iter().zip(&FIRST_USE.0) {
                entry.store(first.load(Relaxed), Relaxed);
            }
            context
        })
    }

    /// The copy of `libset` this context holds.
    fn held(&self, libset: &Shared) -> Option<Held> {
        self.held
            .iter()
            .copied()
            .find(|held| core::ptr::eq(held.libset, libset))
    }

    /// Records `held` and points every routed function of its libset at it.
    fn install(&mut self, held: Held) {
        let state = held.libset.lock();
        for &index in &state.stubs {
            self.routes.0[index].store(held.bias + OFFSET[index].load(Relaxed), Relaxed);
        }
        drop(state);
        self.held.push(held);
    }

    /// Gives every held copy back (renewed if `renew`) and resets the routes to first uses;
    /// then the context returns to the pool.
    fn release(mut self: Box<Context>, renew: bool) {
        for held in self.held.drain(..) {
            let state = held.libset.lock();
            for &index in &state.stubs {
                self.routes.0[index].store(stubs::slow_entry(index), Relaxed);
            }
            drop(state);
            held.libset.give_back(held.copy, renew);
        }
        CONTEXTS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(self);
    }
}

/// The context of `lpf`, taking one if it has none. Only `lpf`'s own code may use it
/// (rule 2).
fn context_of(lpf: &Lpf) -> *mut Context {
    let mut raw = lpf.libset.get().cast::<Context>();
    if raw.is_null() {
        raw = Box::into_raw(Context::take());
        lpf.libset.set(raw.cast::<c_void>());
    }
    raw
}

/// Points the running context's TLS word at its table, where that is allowed.
fn cache(lpf: &Lpf, context: &Context) {
    if lpf.tls != 0 && CACHE.load(Relaxed) {
        stubs::set_current_routes(&context.routes);
    }
}

/// The copy of `libset` the running function holds, taking one now if it holds none; `None`
/// outside any function. Context: any but a signal handler.
///
/// # Errors
/// [`Error::CopyLimit`] when every copy is held by other functions, or why a new copy could
/// not be loaded.
pub(crate) fn acquire(libset: &'static Shared) -> Result<Option<Held>, Error> {
    let Some(result) = with_running(|lpf| {
        let _section = RuntimeSection::enter();
        // SAFETY: the context is owned by `lpf` (rule 2), whose code is what runs this, and
        // no other reference to it is live.
        let context = unsafe { &mut *context_of(lpf) };
        cache(lpf, context);
        if let Some(held) = context.held(libset) {
            return Ok(held);
        }
        let held = libset.take()?;
        context.install(held);
        Ok(held)
    }) else {
        return Ok(None);
    };
    result.map(Some)
}

/// The copy of `libset` the running function holds, if any (taking none).
pub(crate) fn holding(libset: &Shared) -> Option<Held> {
    with_running(|lpf| {
        let raw = lpf.libset.get().cast::<Context>();
        // SAFETY: the context is owned by `lpf`, whose code runs this (rule 2).
        unsafe { raw.as_ref() }.and_then(|context| context.held(libset))
    })
    .flatten()
}

/// The resolver of the stubs' slow entries: where stub `index` continues in the running
/// context. Outside any function that is the original (and the thread's table becomes
/// [`ORIGINAL`]); inside one, the function's copy, taken now if it holds none. A function
/// that finds every copy held by others waits for one: it pauses (as `pause` would, without
/// being a cancellation point) and tries again when it is resumed.
///
/// # Safety
/// Called only by the stubs' slow part, with `index` a stub's index.
unsafe extern "C" fn resolve(index: usize) -> usize {
    // SAFETY: assigned stubs point at a libset that lives for the process (rule 1).
    let Some(libset) = (unsafe { OWNER[index].load(Relaxed).as_ref() }) else {
        abort_with(b"inger: a libset stub that was never assigned was called\n")
    };
    let routed = with_running(|lpf| {
        loop {
            let section = RuntimeSection::enter();
            // SAFETY: the context is owned by `lpf` (rule 2), whose code is what runs this, and
            // no other reference to it is live.
            let context = unsafe { &mut *context_of(lpf) };
            cache(lpf, context);
            if let Some(held) = context.held(libset) {
                // A function routed after the copy was taken: fill its entry now.
                let target = held.bias + OFFSET[index].load(Relaxed);
                context.routes.0[index].store(target, Relaxed);
                return target;
            }
            match libset.take() {
                Ok(held) => {
                    context.install(held);
                    return held.bias + OFFSET[index].load(Relaxed);
                }
                Err(Error::CopyLimit { .. }) => {
                    libset.counters.waits.fetch_add(1, Relaxed);
                    drop(section);
                    yield_without_unwinding();
                }
                Err(error) => {
                    let message = error.to_string();
                    write_stderr(&[
                        b"inger: a routed call into ",
                        libset.name.as_bytes(),
                        b" could not get a copy of the library for its preemptible function: ",
                        message.as_bytes(),
                        b"\n",
                    ]);
                    abort_with(b"inger: aborting (a routed call cannot return an error)\n");
                }
            }
        }
    });
    match routed {
        Some(target) => target,
        None => {
            if CACHE.load(Relaxed) {
                stubs::set_current_routes(&ORIGINAL);
            }
            ORIGINAL.0[index].load(Relaxed)
        }
    }
}

/// Releases the copies of a function that has finished (on its own stack, after its
/// thread-local destructors): they go back to their pools, renewed if it `panicked` (a
/// cooperative cancellation unwinds as a panic), as left otherwise.
pub(crate) fn finished(lpf: &Lpf, panicked: bool) {
    let raw = lpf.libset.replace(core::ptr::null_mut()).cast::<Context>();
    if raw.is_null() {
        return;
    }
    let _section = RuntimeSection::enter();
    if lpf.tls != 0 && CACHE.load(Relaxed) {
        stubs::set_current_routes(&FIRST_USE);
    }
    // SAFETY: made by `context_of` with Box::into_raw, and just taken out of the function.
    unsafe { Box::from_raw(raw) }.release(panicked);
}

/// Releases the copies of a paused function that is being discarded (in the caller's
/// context): each is renewed, since the function may have stopped half-way through it.
pub(crate) fn abandoned(lpf: &Lpf) {
    let raw = lpf.libset.replace(core::ptr::null_mut()).cast::<Context>();
    if raw.is_null() {
        return;
    }
    let _section = RuntimeSection::enter();
    if lpf.tls != 0 && CACHE.load(Relaxed) {
        // SAFETY: the discarded function's block is live and nobody runs in it any more.
        unsafe { stubs::set_routes_in_block(lpf.tls, &FIRST_USE) };
    }
    // SAFETY: made by `context_of` with Box::into_raw, and just taken out of the function.
    unsafe { Box::from_raw(raw) }.release(true);
}
