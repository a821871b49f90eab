//! The counter library of the libset tests (`tests/c/libset/counter.c`, global state) and its
//! driver (`driver.c`, which calls it through its PLT, its GOT, an address and a static
//! table), compiled and loaded under a stem of the test's own, so that each test has its own
//! module.

use std::path::PathBuf;

use super::c::{Library, as_fn, compile_c, compile_c_linked};

/// `long f(long)`.
pub type LongFn = unsafe extern "C" fn(i64) -> i64;
/// `long f(void)`.
pub type GetFn = unsafe extern "C" fn() -> i64;
/// `long f(long, long)`.
pub type EffectFn = unsafe extern "C" fn(i64, i64) -> i64;

/// The counter library and its driver, loaded; the libset is opened by the test.
pub struct Counter {
    /// The counter library's path (what `inger::Libset::open` is given).
    pub path: PathBuf,
    /// The driver, loaded with `dlopen` (it loads the counter library as a dependency).
    pub driver: Library,
    /// `drive_add(v)`: `counter_add(v)` through the PLT.
    pub add: LongFn,
    /// `drive_get()`: `counter_get()` through the GOT (no PLT).
    pub get: GetFn,
    /// `drive_grind(rounds)`: `counter_grind(rounds)` through the PLT.
    pub grind: LongFn,
    /// `drive_table_add(v)`: `counter_add(v)` through a pointer in a static table.
    pub table_add: LongFn,
    /// `drive_adder()`: `&counter_add`, taken in the driver.
    pub adder: unsafe extern "C" fn() -> LongFn,
    /// `counter_grind_effect(total, rounds)` of the original (pure).
    pub grind_effect: EffectFn,
}

impl Counter {
    /// Compiles (once) and loads `counter.c` as `lib<stem>-<hash>.so` and a driver linked
    /// against it.
    pub fn load(stem: &str) -> Counter {
        let path = compile_c("libset/counter.c", &format!("lib{stem}"), &[]);
        let driver_path = compile_c_linked("libset/driver.c", &format!("lib{stem}_driver"), &path);
        let driver = Library::open(&driver_path);
        let counter = Library::open(&path); // the driver's dependency, already loaded
        // SAFETY: the driver's and the counter library's functions have exactly these C
        // signatures.
        unsafe {
            Counter {
                add: as_fn(driver.address("drive_add")),
                get: as_fn(driver.address("drive_get")),
                grind: as_fn(driver.address("drive_grind")),
                table_add: as_fn(driver.address("drive_table_add")),
                adder: as_fn(driver.address("drive_adder")),
                grind_effect: as_fn(counter.address("counter_grind_effect")),
                path,
                driver,
            }
        }
    }

    /// The path as a string.
    pub fn name(&self) -> &str {
        self.path.to_str().expect("UTF-8 path")
    }

    /// `counter_add` through the PLT.
    pub fn add(&self, value: i64) -> i64 {
        // SAFETY: see `load`.
        unsafe { (self.add)(value) }
    }

    /// `counter_get` through the GOT.
    pub fn get(&self) -> i64 {
        // SAFETY: see `load`.
        unsafe { (self.get)() }
    }

    /// `counter_grind` through the PLT.
    pub fn grind(&self, rounds: i64) -> i64 {
        // SAFETY: see `load`.
        unsafe { (self.grind)(rounds) }
    }

    /// `counter_add` through the driver's static table.
    pub fn table_add(&self, value: i64) -> i64 {
        // SAFETY: see `load`.
        unsafe { (self.table_add)(value) }
    }

    /// `counter_add` through the address the driver takes.
    pub fn add_through_address(&self, value: i64) -> i64 {
        // SAFETY: see `load`; the address is `counter_add`'s (or its stub's).
        unsafe { (self.adder)()(value) }
    }

    /// What `counter_grind(rounds)` adds to `total`.
    pub fn grind_effect(&self, total: i64, rounds: i64) -> i64 {
        // SAFETY: see `load`; a pure function.
        unsafe { (self.grind_effect)(total, rounds) }
    }
}

/// Reads the `int` at `address` (a flag of some instance of the counter library).
pub fn read_flag(address: *mut core::ffi::c_void) -> i32 {
    // SAFETY: the address of a `volatile int` of a loaded library, which stays loaded.
    unsafe { core::ptr::read_volatile(address.cast::<i32>()) }
}
