/* Calls into the counter library (counter.c) the ways a program does, with no knowledge of
 * libsets: through its PLT (lazily bound), through its GOT without a PLT, through an address
 * taken at run time, and through a pointer in a static table. Routing must redirect all four
 * in a preemptible function. */

long counter_add(long value);
long counter_get(void) __attribute__((noplt));
long counter_grind(long rounds);
int counter_history_length(void);

typedef long (*adder)(long);

/* A pointer in static data (an R_X86_64_64 relocation in .data.rel.ro). */
static const adder table[] = { counter_add };

long drive_add(long value) { return counter_add(value); }
long drive_get(void) { return counter_get(); }
long drive_grind(long rounds) { return counter_grind(rounds); }
int drive_history_length(void) { return counter_history_length(); }
adder drive_adder(void) { return &counter_add; }
long drive_table_add(long value) { return table[0](value); }
