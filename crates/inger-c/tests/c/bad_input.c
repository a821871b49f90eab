/* Every misuse the API can recognise returns its error code and changes nothing. */
#include "check.h"

#include <string.h>

static void nothing(void *argument) { (void)argument; }

/* --- a function that tries to resume and cancel its own handle --- */
static inger_linger *self_handle;
static int self_resume_code = -1;
static int self_cancel_code = -1;
static void touch_own_handle(void *argument) {
    (void)argument;
    self_resume_code = inger_resume(self_handle, INGER_FOREVER);
    self_cancel_code = inger_cancel(self_handle);
    CHECK(!inger_is_complete(self_handle)); /* it is running */
    CHECK(!inger_yielded(self_handle));
}

int main(void) {
    inger_linger *const sentinel = (inger_linger *)(uintptr_t)0x5e771e;
    inger_linger *call = sentinel;

    /* NULL arguments. */
    CHECK_CODE(inger_launch(NULL, nothing, INGER_FOREVER, NULL), INGER_ENULL);
    CHECK_CODE(inger_launch(&call, NULL, INGER_FOREVER, NULL), INGER_ENULL);
    CHECK(call == sentinel); /* left unchanged */
    CHECK_CODE(inger_resume(NULL, INGER_FOREVER), INGER_ENULL);
    CHECK_CODE(inger_cancel(NULL), INGER_ENULL);
    CHECK_CODE(inger_stats(NULL), INGER_ENULL);
    CHECK_CODE(inger_capabilities(NULL), INGER_ENULL);
    CHECK(inger_is_complete(NULL));
    CHECK(!inger_yielded(NULL));

    /* Pointers that are not handles. */
    static _Alignas(64) unsigned char fake[256];
    inger_linger *forged = (inger_linger *)fake;
    CHECK_CODE(inger_resume(forged, INGER_FOREVER), INGER_EBADHANDLE);
    CHECK_CODE(inger_cancel(forged), INGER_EBADHANDLE);
    CHECK(inger_is_complete(forged) && !inger_yielded(forged));
    inger_linger *misaligned = (inger_linger *)(fake + 1);
    CHECK_CODE(inger_resume(misaligned, INGER_FOREVER), INGER_EBADHANDLE);
    CHECK_CODE(inger_cancel(misaligned), INGER_EBADHANDLE);

    /* Resume after completion: an error, and the handle stays valid. */
    CHECK_OK(inger_launch(&call, nothing, INGER_FOREVER, NULL));
    CHECK(inger_is_complete(call));
    CHECK_CODE(inger_resume(call, INGER_FOREVER), INGER_EFINISHED);
    CHECK_CODE(inger_resume(call, 0), INGER_EFINISHED);
    CHECK(inger_is_complete(call));
    CHECK_OK(inger_cancel(call));

    /* A function that resumes or cancels itself. */
    CHECK_OK(inger_launch(&self_handle, touch_own_handle, 0, NULL));
    CHECK_OK(inger_resume(self_handle, INGER_FOREVER));
    CHECK_CODE(self_resume_code, INGER_ERUNNING);
    CHECK_CODE(self_cancel_code, INGER_ERUNNING);
    CHECK(inger_is_complete(self_handle));
    CHECK_OK(inger_cancel(self_handle));

    /* Every code has a description, and unknown ones too. */
    const int codes[] = {INGER_OK, INGER_ESTACK, INGER_ESIGNALINUSE, INGER_ESYSTEM, INGER_ECONFIG,
                         INGER_EINITIALIZED, INGER_EFINISHED, INGER_ERUNNING, INGER_EINHANDLER,
                         INGER_EWRONGTHREAD, INGER_ENULL, INGER_EBADHANDLE, INGER_EINTERNAL};
    const char *unknown = inger_strerror(-12345);
    CHECK(unknown != NULL && strlen(unknown) > 0);
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *text = inger_strerror(codes[i]);
        CHECK(text != NULL && strlen(text) > 0);
        CHECK(strcmp(text, unknown) != 0);
    }
    printf("bad input ok\n");
    return 0;
}
