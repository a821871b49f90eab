/* Reads the counter library's global variable directly: a function's copy of the library
 * has its own, which this module would never see, so routing must refuse. */

extern long counter_total;

long data_user_total(void) { return counter_total; }
