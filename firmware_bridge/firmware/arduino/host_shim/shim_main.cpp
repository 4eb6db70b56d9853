/*
 * shim_main.cpp - runs kdp_controller.ino on the host with simulated time and a scripted host:
 *   t = 50 ms   the host sends HELLO_REQ
 *   t = 100 ms  the host sends ACTION {0.5, -2.0} (valid_for 50 ms) planned from the newest STATE
 *   t = 300 ms  end
 * Checks: HELLO answered, PWM on while the ACTION is valid (second channel clamped to 255),
 * PWM zero again after the watchdog (<= 50 ms + one loop), STATE flags report WATCHDOG_TRIPPED.
 * Prints every byte the sketch sent as hex on stdout, "N passed, M failed" on stderr.
 */
#include <stdio.h>

#include "Arduino.h"
#include "kdp_proto.h"

ShimSerial Serial;

static unsigned long g_us = 0;
static int g_pwm[32];
static uint8_t g_rx[4096];
static size_t g_rx_len = 0, g_rx_pos = 0;
static uint8_t g_tx[1 << 16];
static size_t g_tx_len = 0;

void pinMode(uint8_t, uint8_t) {}
void digitalWrite(uint8_t, uint8_t) {}
int digitalRead(uint8_t) { return HIGH; }
int analogRead(uint8_t pin) { return (int)(pin * 37u + (g_us / 1000u)) % 1024; }
void analogWrite(uint8_t pin, int value) { g_pwm[pin % 32] = value; }
unsigned long micros(void) { return g_us; }
unsigned long millis(void) { return g_us / 1000u; }
long random(long max) { return (long)(rand() % (max > 0 ? max : 1)); }

void ShimSerial::begin(unsigned long) {}
int ShimSerial::available(void) { return (int)(g_rx_len - g_rx_pos); }
int ShimSerial::read(void) { return g_rx_pos < g_rx_len ? g_rx[g_rx_pos++] : -1; }
int ShimSerial::availableForWrite(void) { return 64; }
size_t ShimSerial::write(const uint8_t *d, size_t n) {
    if (g_tx_len + n > sizeof g_tx) return 0;
    memcpy(g_tx + g_tx_len, d, n);
    g_tx_len += n;
    return n;
}

static kdp_writer_t host;

static void host_send(uint8_t type, const void *msg) {
    size_t n = kdp_writer_msg(&host, type, (uint32_t)g_us, msg, NULL);
    memcpy(g_rx + g_rx_len, host.wire, n);
    g_rx_len += n;
}

/* Scan everything the sketch sent so far. */
static void scan(int *hellos, uint32_t *last_state_seq, uint16_t *last_flags) {
    static kdp_parser_t p;
    kdp_parser_init(&p);
    *hellos = 0;
    for (size_t i = 0; i < g_tx_len; i++) {
        if (!kdp_parser_push(&p, g_tx[i])) continue;
        if (p.frame.type == KDP_MSG_HELLO) (*hellos)++;
        if (p.frame.type == KDP_MSG_STATE) {
            kdp_state_t s;
            kdp_decode_state(p.frame.payload, p.frame.payload_len, &s);
            *last_state_seq = p.frame.seq;
            *last_flags = s.flags;
        }
    }
}

int main(void) {
    int pass = 0, fail = 0, hellos = 0;
    int pwm_during = -1, pwm2_during = -1, pwm_after = -1;
    uint32_t seq = 0;
    uint16_t flags = 0;
    bool sent_hello = false, sent_action = false;
    kdp_writer_init(&host);
    setup();
    for (g_us = 0; g_us < 300000u; g_us += 100u) {
        if (!sent_hello && g_us >= 50000u) {
            kdp_hello_req_t q = {1234u};
            host_send(KDP_MSG_HELLO_REQ, &q);
            sent_hello = true;
        }
        if (!sent_action && g_us >= 100000u) {
            kdp_action_t a;
            scan(&hellos, &seq, &flags);
            a.state_seq = seq;
            a.valid_for_ms = 50;
            a.action_dim = 2;
            a.action[0] = 0.5f;
            a.action[1] = -2.0f;
            host_send(KDP_MSG_ACTION, &a);
            sent_action = true;
        }
        loop();
        if (g_us == 120000u) {
            pwm_during = g_pwm[5];
            pwm2_during = g_pwm[6];
        }
        if (g_us == 150000u + 200u) pwm_after = g_pwm[5];
    }
    scan(&hellos, &seq, &flags);
#define CHECK(c)                                          \
    do {                                                  \
        if (c) pass++;                                    \
        else {                                            \
            fail++;                                       \
            fprintf(stderr, "FAIL sketch: %s\n", #c);     \
        }                                                 \
    } while (0)
    CHECK(hellos == 2); /* unsolicited at boot + answer */
    CHECK(pwm_during == 128);
    CHECK(pwm2_during == 255);
    CHECK(pwm_after == 0);
    CHECK(flags & KDP_FLAG_WATCHDOG_TRIPPED);
    CHECK(seq >= 29); /* ~30 STATEs in 300 ms at 100 Hz, plus other frames */
    for (size_t i = 0; i < g_tx_len; i++) printf("%02x", g_tx[i]);
    printf("\n");
    fprintf(stderr, "%d passed, %d failed\n", pass, fail);
    return fail == 0 ? 0 : 1;
}
