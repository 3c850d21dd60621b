/* The includes cmocka needs before <cmocka.h>, in the order it needs them. */
#ifndef STRATUS_TEST_CMOCKA_ALL_H
#define STRATUS_TEST_CMOCKA_ALL_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#endif
