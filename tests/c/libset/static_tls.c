/* A library with an initial-exec thread-local variable (DF_STATIC_TLS): every instance needs
 * static TLS space, so a libset must refuse to copy it. */

static __thread long slot __attribute__((tls_model("initial-exec")));

long static_tls_bump(void) { return ++slot; }
