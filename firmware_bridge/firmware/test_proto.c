/*
 * test_proto.c - unit tests for kdp_proto.c and kdp_ctrl.c (host build).
 *
 *   test_proto            run the tests, print "N passed, M failed", exit 1 on failure
 *   test_proto --vectors  print "<name> <wire hex>" test vectors (checked against protocol.py)
 *   test_proto --parse    read hex bytes from stdin, run them through the streaming parser and
 *                         print one line per accepted frame "<type> <seq> <ts> <payload hex>",
 *                         then "stats ok=.. crc=.. malformed=.. version=.. oversize=.. resyncs=.."
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdp_ctrl.h"
#include "kdp_proto.h"

static int g_pass = 0, g_fail = 0;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (cond) {                                                              \
            g_pass++;                                                            \
        } else {                                                                 \
            g_fail++;                                                            \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);      \
        }                                                                        \
    } while (0)

static uint32_t rng_state = 12345u;
static uint32_t rnd(void) { /* xorshift32 */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* ---- capture sink for writers ------------------------------------------- */

typedef struct {
    uint8_t buf[16384];
    size_t len;
} sink_t;

static void sink_write(void *ctx, const uint8_t *data, size_t len) {
    sink_t *s = (sink_t *)ctx;
    if (s->len + len <= sizeof s->buf) {
        memcpy(s->buf + s->len, data, len);
        s->len += len;
    }
}

/* Parse everything in a sink; count frames of a type and keep the last of it. */
static int sink_count(const sink_t *s, uint8_t type, kdp_header_t *last, uint8_t *payload_copy) {
    static kdp_parser_t p;
    size_t i;
    int n = 0;
    kdp_parser_init(&p);
    for (i = 0; i < s->len; i++) {
        if (kdp_parser_push(&p, s->buf[i]) && p.frame.type == type) {
            n++;
            if (last) *last = p.frame;
            if (payload_copy) memcpy(payload_copy, p.frame.payload, p.frame.payload_len);
        }
    }
    return n;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_crc(void) {
    const uint8_t check[] = "123456789";
    CHECK(kdp_crc16(check, 9) == 0x29B1u);
    CHECK(kdp_crc16(check, 0) == 0xFFFFu);
}

static void test_cobs_vectors(void) {
    const uint8_t in1[] = {0x00};
    const uint8_t out1[] = {0x01, 0x01};
    const uint8_t in2[] = {0x11, 0x22, 0x00, 0x33};
    const uint8_t out2[] = {0x03, 0x11, 0x22, 0x02, 0x33};
    uint8_t enc[600], dec[600], in3[300];
    size_t n, m, i;
    n = kdp_cobs_encode(in1, sizeof in1, enc, sizeof enc);
    CHECK(n == sizeof out1 && memcmp(enc, out1, n) == 0);
    n = kdp_cobs_encode(in2, sizeof in2, enc, sizeof enc);
    CHECK(n == sizeof out2 && memcmp(enc, out2, n) == 0);
    n = kdp_cobs_encode(in1, 0, enc, sizeof enc);
    CHECK(n == 1 && enc[0] == 0x01);
    /* 254 non-zero bytes: one 0xFF block, no trailing empty block (matches Python cobs) */
    for (i = 0; i < sizeof in3; i++) in3[i] = (uint8_t)(1 + i % 255);
    n = kdp_cobs_encode(in3, 254, enc, sizeof enc);
    CHECK(n == 255 && enc[0] == 0xFF);
    n = kdp_cobs_encode(in3, 255, enc, sizeof enc);
    CHECK(n == 257 && enc[0] == 0xFF && enc[255] == 0x02);
    CHECK(kdp_cobs_decode(enc, n, dec, sizeof dec, &m) == KDP_OK && m == 255 && memcmp(dec, in3, m) == 0);
    /* cap too small */
    CHECK(kdp_cobs_encode(in3, 254, enc, 254) == 0);
    /* decode errors */
    {
        const uint8_t bad1[] = {0x05, 0x11, 0x22};
        const uint8_t bad2[] = {0x03, 0x11, 0x00, 0x22};
        CHECK(kdp_cobs_decode(bad1, sizeof bad1, dec, sizeof dec, &m) == KDP_ERR_COBS);
        CHECK(kdp_cobs_decode(bad2, sizeof bad2, dec, sizeof dec, &m) == KDP_ERR_COBS);
    }
}

static void test_cobs_random(void) {
    uint8_t in[700], enc[720], dec[720];
    int trial, ok = 1;
    for (trial = 0; trial < 3000 && ok; trial++) {
        size_t len = rnd() % 600, i, n, m = 0;
        int zero_rate = (int)(rnd() % 4); /* 0: no zeros at all (long blocks) */
        for (i = 0; i < len; i++) {
            uint8_t b = (uint8_t)rnd();
            if (zero_rate == 0 && b == 0) b = 1;
            if (zero_rate == 3 && (rnd() % 4) == 0) b = 0;
            in[i] = b;
        }
        n = kdp_cobs_encode(in, len, enc, sizeof enc);
        ok = ok && n > 0 && n <= len + len / 254 + 1 && memchr(enc, 0, n) == NULL;
        ok = ok && kdp_cobs_decode(enc, n, dec, sizeof dec, &m) == KDP_OK && m == len && memcmp(in, dec, len) == 0;
    }
    CHECK(ok);
}

static void test_seq_and_finite(void) {
    float nan_f, inf_f, one = 1.0f;
    uint32_t u;
    CHECK(kdp_seq_newer(1, 0));
    CHECK(!kdp_seq_newer(0, 0));
    CHECK(!kdp_seq_newer(0, 1));
    CHECK(kdp_seq_newer(0, 0xFFFFFFFFu));
    CHECK(kdp_seq_newer(5, 0xFFFFFFF0u));
    CHECK(!kdp_seq_newer(0x80000000u, 0));
    u = 0x7FC00000u;
    memcpy(&nan_f, &u, 4);
    u = 0x7F800000u;
    memcpy(&inf_f, &u, 4);
    CHECK(!kdp_isfinite(nan_f));
    CHECK(!kdp_isfinite(inf_f));
    CHECK(!kdp_isfinite(-inf_f));
    CHECK(kdp_isfinite(one));
    CHECK(kdp_isfinite(3.4e38f));
}

static void test_roundtrip_all(void) {
    static kdp_writer_t w;
    static kdp_parser_t p;
    kdp_hello_t h, h2;
    kdp_state_t s, s2;
    kdp_action_t a, a2;
    kdp_fault_t f, f2;
    kdp_heartbeat_t hb, hb2;
    kdp_stop_t st, st2;
    kdp_reset_t r, r2;
    kdp_hello_req_t q, q2;
    size_t n, i;
    int got;
    kdp_writer_init(&w);
    kdp_parser_init(&p);

#define FEED(n_)                                                  \
    do {                                                          \
        got = 0;                                                  \
        for (i = 0; i < (n_); i++) got += kdp_parser_push(&p, w.wire[i]); \
    } while (0)

    memset(&h, 0, sizeof h);
    h.nonce = 77; h.boot_id = 0xABCDEF01u; h.fw_version = 0x010203u; h.fw_signature = 0xDEADBEEFu;
    h.state_period_us = 20000; h.proto_version = 1; h.state_dim = 64; h.action_dim = 16;
    h.max_valid_for_ms = 500; h.capabilities = 0;
    for (i = 0; i < 16; i++) { h.action_min[i] = -1.5f * (float)(i + 1); h.action_max[i] = 2.0f * (float)(i + 1); }
    h.name_len = 7; memcpy(h.fw_name, "vc-test", 7);
    n = kdp_writer_msg(&w, KDP_MSG_HELLO, 123, &h, NULL);
    CHECK(n > 0 && n <= KDP_MAX_WIRE_FRAME);
    FEED(n);
    CHECK(got == 1 && p.frame.type == KDP_MSG_HELLO && p.frame.seq == 0 && p.frame.timestamp_us == 123);
    CHECK(kdp_decode_hello(p.frame.payload, p.frame.payload_len, &h2) == KDP_OK);
    CHECK(h2.boot_id == h.boot_id && h2.state_dim == 64 && h2.action_dim == 16 && h2.max_valid_for_ms == 500);
    CHECK(h2.action_min[15] == h.action_min[15] && h2.action_max[3] == h.action_max[3]);
    CHECK(strcmp(h2.fw_name, "vc-test") == 0);

    memset(&s, 0, sizeof s);
    s.boot_id = 9; s.last_action_seq = 0xFFFFFFFFu; s.flags = KDP_FLAG_ESTOP | KDP_FLAG_SUCCESS; s.state_dim = 64;
    for (i = 0; i < 64; i++) s.state[i] = (float)i * 0.25f - 3.0f;
    n = kdp_writer_msg(&w, KDP_MSG_STATE, 0xFFFFFFFFu, &s, NULL);
    CHECK(n == KDP_MAX_WIRE_FRAME || n == KDP_MAX_WIRE_FRAME - 1u); /* biggest frame there is */
    FEED(n);
    CHECK(got == 1 && p.frame.seq == 1 && kdp_decode_state(p.frame.payload, p.frame.payload_len, &s2) == KDP_OK);
    CHECK(s2.flags == s.flags && s2.last_action_seq == s.last_action_seq && memcmp(s2.state, s.state, 64 * 4) == 0);

    a.state_seq = 41; a.valid_for_ms = 65535; a.action_dim = 2; a.action[0] = -0.5f; a.action[1] = 1e-3f;
    n = kdp_writer_msg(&w, KDP_MSG_ACTION, 5, &a, NULL);
    FEED(n);
    CHECK(got == 1 && kdp_decode_action(p.frame.payload, p.frame.payload_len, &a2) == KDP_OK);
    CHECK(a2.state_seq == 41 && a2.valid_for_ms == 65535 && a2.action_dim == 2 && a2.action[1] == 1e-3f);

    f.code = KDP_FAULT_OVERCURRENT; f.text_len = 3; memcpy(f.text, "hot", 3);
    n = kdp_writer_msg(&w, KDP_MSG_ESTOP, 6, &f, NULL);
    FEED(n);
    CHECK(got == 1 && p.frame.type == KDP_MSG_ESTOP && kdp_decode_fault(p.frame.payload, p.frame.payload_len, &f2) == KDP_OK);
    CHECK(f2.code == KDP_FAULT_OVERCURRENT && strcmp(f2.text, "hot") == 0);

    hb.boot_id = 3; hb.nonce = 4; hb.is_reply = 1;
    n = kdp_writer_msg(&w, KDP_MSG_HEARTBEAT, 7, &hb, NULL);
    FEED(n);
    CHECK(got == 1 && kdp_decode_heartbeat(p.frame.payload, p.frame.payload_len, &hb2) == KDP_OK && hb2.nonce == 4 && hb2.is_reply == 1);

    st.reason = 6;
    n = kdp_writer_msg(&w, KDP_MSG_STOP, 8, &st, NULL);
    FEED(n);
    CHECK(got == 1 && kdp_decode_stop(p.frame.payload, p.frame.payload_len, &st2) == KDP_OK && st2.reason == 6);

    r.boot_id = 0x12345678u; r.cause = KDP_RESET_BROWN_OUT;
    n = kdp_writer_msg(&w, KDP_MSG_RESET, 9, &r, NULL);
    FEED(n);
    CHECK(got == 1 && kdp_decode_reset(p.frame.payload, p.frame.payload_len, &r2) == KDP_OK && r2.cause == KDP_RESET_BROWN_OUT);

    q.nonce = 0xCAFEu;
    n = kdp_writer_msg(&w, KDP_MSG_HELLO_REQ, 10, &q, NULL);
    FEED(n);
    CHECK(got == 1 && kdp_decode_hello_req(p.frame.payload, p.frame.payload_len, &q2) == KDP_OK && q2.nonce == 0xCAFEu);

    /* invalid messages are refused by the writer */
    s.state_dim = 0;
    CHECK(kdp_writer_msg(&w, KDP_MSG_STATE, 0, &s, NULL) == 0);
    a.action_dim = 17;
    CHECK(kdp_writer_msg(&w, KDP_MSG_ACTION, 0, &a, NULL) == 0);
    CHECK(kdp_writer_msg(&w, 0x42, 0, &a, NULL) == 0);
    CHECK(p.stats.frames_ok == 8 && p.stats.crc_errors == 0 && p.stats.malformed == 0);
#undef FEED
}

static size_t make_state_frame(kdp_writer_t *w, uint8_t *out, uint32_t marker) {
    kdp_state_t s;
    size_t n;
    memset(&s, 0, sizeof s);
    s.boot_id = 1; s.state_dim = 4; s.last_action_seq = marker;
    s.state[0] = (float)marker;
    n = kdp_writer_msg(w, KDP_MSG_STATE, marker, &s, NULL);
    memcpy(out, w->wire, n);
    return n;
}

static void test_parser_resync(void) {
    static kdp_writer_t w;
    static kdp_parser_t p;
    uint8_t f1[KDP_MAX_WIRE_FRAME], f2[KDP_MAX_WIRE_FRAME];
    size_t n1, n2, i;
    int got = 0;
    kdp_writer_init(&w);
    kdp_parser_init(&p);
    n1 = make_state_frame(&w, f1, 1);
    n2 = make_state_frame(&w, f2, 2);

    /* garbage without delimiter, then delimiter, then a good frame */
    for (i = 0; i < 50; i++) kdp_parser_push(&p, (uint8_t)(1 + rnd() % 255));
    kdp_parser_push(&p, 0);
    for (i = 0; i < n1; i++) got += kdp_parser_push(&p, f1[i]);
    CHECK(got == 1 && p.stats.resyncs == 1 && p.frame.timestamp_us == 1);

    /* bit flip in a data byte -> CRC error (or malformed), next frame still decodes */
    f1[5] ^= 0x10;
    got = 0;
    for (i = 0; i < n1; i++) got += kdp_parser_push(&p, f1[i]);
    for (i = 0; i < n2; i++) got += kdp_parser_push(&p, f2[i]);
    CHECK(got == 1 && p.frame.timestamp_us == 2 && p.stats.crc_errors + p.stats.malformed == 2);
    CHECK(p.stats.resyncs == 2);
    f1[5] ^= 0x10;

    /* truncated frame (delimiter lost) merges with the next one: both dropped, third ok */
    got = 0;
    for (i = 0; i + 4 < n1; i++) got += kdp_parser_push(&p, f1[i]);
    for (i = 0; i < n2; i++) got += kdp_parser_push(&p, f2[i]);
    for (i = 0; i < n1; i++) got += kdp_parser_push(&p, f1[i]);
    CHECK(got == 1 && p.frame.timestamp_us == 1);

    /* oversize run: > KDP_MAX_ENCODED_FRAME non-zero bytes */
    for (i = 0; i < 1000; i++) kdp_parser_push(&p, 0x55);
    CHECK(p.stats.oversize == 1);
    got = 0;
    for (i = 0; i < n2; i++) got += kdp_parser_push(&p, f2[i]); /* eaten: ends the oversize run */
    for (i = 0; i < n2; i++) got += kdp_parser_push(&p, f2[i]);
    CHECK(got == 1 && p.frame.timestamp_us == 2 && p.stats.oversize == 1);

    /* empty frames (0x00 0x00) are ignored silently */
    {
        uint32_t before = p.stats.malformed + p.stats.crc_errors;
        kdp_parser_push(&p, 0);
        kdp_parser_push(&p, 0);
        CHECK(p.stats.malformed + p.stats.crc_errors == before);
    }
}

static void test_parser_random_garbage(void) {
    static kdp_parser_t p;
    int i, accepted = 0;
    kdp_parser_init(&p);
    for (i = 0; i < 200000; i++) accepted += kdp_parser_push(&p, (uint8_t)((rnd() % 8) == 0 ? 0 : rnd()));
    CHECK(accepted == 0);
    CHECK(p.stats.frames_ok == 0);
}

/* ---- controller logic --------------------------------------------------------- */

static sink_t g_sink;

static void ctrl_setup(kdp_ctrl_t *c) {
    kdp_ctrl_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.state_dim = 4; cfg.action_dim = 2;
    cfg.action_min[0] = cfg.action_min[1] = -1.0f;
    cfg.action_max[0] = cfg.action_max[1] = 1.0f;
    cfg.max_valid_for_ms = 500; cfg.state_period_us = 10000; cfg.boot_id = 42;
    cfg.fw_version = 0x000100u; cfg.fw_signature = 1; cfg.fw_name = "test";
    cfg.write = sink_write; cfg.write_ctx = &g_sink;
    g_sink.len = 0;
    kdp_ctrl_init(c, &cfg);
}

static void host_send(kdp_ctrl_t *c, kdp_writer_t *hw, uint8_t type, const void *msg, uint32_t now) {
    size_t n = kdp_writer_msg(hw, type, now, msg, NULL), i;
    for (i = 0; i < n; i++) kdp_ctrl_rx_byte(c, hw->wire[i], now);
}

static void test_ctrl(void) {
    static kdp_ctrl_t c;
    static kdp_writer_t hw;
    const float zero4[4] = {0, 0, 0, 0};
    kdp_action_t a;
    kdp_hello_req_t q;
    kdp_stop_t st;
    kdp_header_t hdr;
    uint8_t payload[KDP_MAX_PAYLOAD];
    kdp_state_t s;
    kdp_hello_t h;
    uint32_t t = 1000;

    ctrl_setup(&c);
    kdp_writer_init(&hw);
    kdp_ctrl_boot(&c, t, KDP_RESET_POWER_ON);
    CHECK(sink_count(&g_sink, KDP_MSG_RESET, NULL, NULL) == 1);
    CHECK(sink_count(&g_sink, KDP_MSG_HELLO, NULL, NULL) == 1);

    q.nonce = 99;
    host_send(&c, &hw, KDP_MSG_HELLO_REQ, &q, t);
    CHECK(sink_count(&g_sink, KDP_MSG_HELLO, &hdr, payload) == 2);
    CHECK(kdp_decode_hello(payload, hdr.payload_len, &h) == KDP_OK && h.nonce == 99 && h.action_dim == 2);

    /* ACTION before any STATE: from the future -> rejected */
    a.state_seq = 0; a.valid_for_ms = 100; a.action_dim = 2; a.action[0] = 0.5f; a.action[1] = 3.0f;
    host_send(&c, &hw, KDP_MSG_ACTION, &a, t);
    CHECK(c.stats.actions_rejected == 1 && !c.active);

    kdp_ctrl_send_state(&c, t, zero4, 0);
    a.state_seq = c.last_state_seq;
    host_send(&c, &hw, KDP_MSG_ACTION, &a, t);
    CHECK(c.active && c.outputs[0] == 0.5f && c.outputs[1] == 1.0f && c.saturated);
    CHECK(c.stats.actions_accepted == 1);

    /* watchdog: still active just before the deadline, tripped at it */
    kdp_ctrl_poll(&c, t + 99999u);
    CHECK(c.active);
    kdp_ctrl_poll(&c, t + 100000u);
    CHECK(!c.active && c.watchdog_tripped && c.outputs[0] == 0.0f && c.stats.watchdog_trips == 1);
    kdp_ctrl_send_state(&c, t + 100000u, zero4, 0);
    CHECK(sink_count(&g_sink, KDP_MSG_STATE, &hdr, payload) == 2);
    CHECK(kdp_decode_state(payload, hdr.payload_len, &s) == KDP_OK && (s.flags & KDP_FLAG_WATCHDOG_TRIPPED));

    /* valid_for capped at max_valid_for_ms */
    t += 200000u;
    a.state_seq = c.last_state_seq; a.valid_for_ms = 60000;
    host_send(&c, &hw, KDP_MSG_ACTION, &a, t);
    CHECK(c.active && c.deadline_us == t + 500000u && !c.watchdog_tripped);

    /* stale action (older state_seq than the accepted one) -> rejected, outputs unchanged */
    kdp_ctrl_send_state(&c, t, zero4, 0);
    a.state_seq = c.last_state_seq;
    host_send(&c, &hw, KDP_MSG_ACTION, &a, t);
    a.state_seq = c.last_state_seq - 5u; a.action[0] = -1.0f;
    host_send(&c, &hw, KDP_MSG_ACTION, &a, t);
    CHECK(c.stats.actions_rejected == 2 && c.outputs[0] == 0.5f);

    /* non-finite and wrong-dim actions rejected */
    {
        uint32_t nanbits = 0x7FC00000u;
        a.state_seq = c.last_state_seq;
        memcpy(&a.action[0], &nanbits, 4);
        host_send(&c, &hw, KDP_MSG_ACTION, &a, t);
        CHECK(c.stats.actions_rejected == 3 && c.outputs[0] == 0.5f);
        a.action[0] = 0.1f; a.action_dim = 3;
        host_send(&c, &hw, KDP_MSG_ACTION, &a, t);
        CHECK(c.stats.actions_rejected == 4);
        a.action_dim = 2;
    }

    /* STOP zeroes outputs; actions planned before it are rejected, newer ones accepted */
    st.reason = 0;
    host_send(&c, &hw, KDP_MSG_STOP, &st, t);
    CHECK(!c.active && c.stopped && c.outputs[0] == 0.0f && c.outputs[1] == 0.0f);
    a.state_seq = c.last_state_seq;
    host_send(&c, &hw, KDP_MSG_ACTION, &a, t);
    CHECK(!c.active && c.stats.actions_rejected == 5);
    kdp_ctrl_send_state(&c, t, zero4, 0);
    a.state_seq = c.last_state_seq;
    host_send(&c, &hw, KDP_MSG_ACTION, &a, t);
    CHECK(c.active && !c.stopped);

    /* e-stop latches */
    {
        kdp_fault_t f;
        f.code = 0; f.text_len = 0;
        host_send(&c, &hw, KDP_MSG_ESTOP, &f, t);
        CHECK(!c.active && c.estop && (kdp_ctrl_flags(&c) & KDP_FLAG_ESTOP));
        kdp_ctrl_send_state(&c, t, zero4, 0);
        a.state_seq = c.last_state_seq;
        host_send(&c, &hw, KDP_MSG_ACTION, &a, t);
        CHECK(!c.active);
    }

    /* watchdog across the u32 microsecond wrap */
    ctrl_setup(&c);
    t = 0xFFFFFF00u;
    kdp_ctrl_send_state(&c, t, zero4, 0);
    a.state_seq = c.last_state_seq; a.valid_for_ms = 1; a.action[0] = 0.2f;
    host_send(&c, &hw, KDP_MSG_ACTION, &a, t);
    kdp_ctrl_poll(&c, t + 500u); /* wrapped, 500 us later */
    CHECK(c.active);
    kdp_ctrl_poll(&c, t + 1000u);
    CHECK(!c.active && c.watchdog_tripped);
}

/* ---- modes ---------------------------------------------------------------------- */

static void print_hex(const uint8_t *d, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) printf("%02x", d[i]);
}

static void emit(const char *name, kdp_writer_t *w, uint8_t type, uint32_t ts, const void *msg) {
    size_t n = kdp_writer_msg(w, type, ts, msg, NULL);
    printf("%s ", name);
    print_hex(w->wire, n);
    printf("\n");
}

/* The same messages are built in tests/test_bridge_firmware.py; keep them in sync. */
static int vectors(void) {
    static kdp_writer_t w;
    kdp_hello_req_t q = {0xA1B2C3D4u};
    kdp_hello_t h;
    kdp_state_t s;
    kdp_action_t a;
    kdp_heartbeat_t hb = {7u, 8u, 1u};
    kdp_fault_t f;
    kdp_stop_t st = {6u};
    kdp_reset_t r = {0x0BADF00Du, KDP_RESET_WATCHDOG};
    int i;
    kdp_writer_init(&w);
    emit("hello_req", &w, KDP_MSG_HELLO_REQ, 1000u, &q);
    memset(&h, 0, sizeof h);
    h.nonce = 0xA1B2C3D4u; h.boot_id = 0x01020304u; h.fw_version = 0x000102u; h.fw_signature = 0xFEEDFACEu;
    h.state_period_us = 20000u; h.proto_version = 1; h.state_dim = 4; h.action_dim = 2;
    h.max_valid_for_ms = 500; h.action_min[0] = -1.0f; h.action_min[1] = -2.5f;
    h.action_max[0] = 1.0f; h.action_max[1] = 2.5f; h.name_len = 6; memcpy(h.fw_name, "kdp-vc", 6);
    emit("hello", &w, KDP_MSG_HELLO, 2000u, &h);
    memset(&s, 0, sizeof s);
    s.boot_id = 0x01020304u; s.last_action_seq = 17u; s.flags = KDP_FLAG_WATCHDOG_TRIPPED | KDP_FLAG_SATURATED;
    s.state_dim = 4; s.state[0] = 1.5f; s.state[1] = -0.25f; s.state[2] = 0.0f; s.state[3] = 1e6f;
    emit("state", &w, KDP_MSG_STATE, 0xFFFFFFFFu, &s);
    s.state_dim = 64;
    for (i = 0; i < 64; i++) s.state[i] = (float)(i + 1) * 1.25f;
    emit("state64", &w, KDP_MSG_STATE, 3000u, &s);
    a.state_seq = 2u; a.valid_for_ms = 100u; a.action_dim = 2; a.action[0] = 0.5f; a.action[1] = -0.75f;
    emit("action", &w, KDP_MSG_ACTION, 4000u, &a);
    emit("heartbeat", &w, KDP_MSG_HEARTBEAT, 5000u, &hb);
    f.code = KDP_FAULT_WATCHDOG; f.text_len = 7; memcpy(f.text, "expired", 7);
    emit("fault", &w, KDP_MSG_FAULT, 6000u, &f);
    f.code = KDP_FAULT_OVERCURRENT; f.text_len = 0;
    emit("estop", &w, KDP_MSG_ESTOP, 7000u, &f);
    emit("stop", &w, KDP_MSG_STOP, 8000u, &st);
    emit("reset", &w, KDP_MSG_RESET, 9000u, &r);
    return 0;
}

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static int parse_stdin(void) {
    static kdp_parser_t p;
    int ch, hi = -1;
    kdp_parser_init(&p);
    while ((ch = getchar()) != EOF) {
        int v = hexval(ch);
        if (v < 0) continue;
        if (hi < 0) {
            hi = v;
            continue;
        }
        if (kdp_parser_push(&p, (uint8_t)(hi << 4 | v))) {
            printf("%u %lu %lu ", (unsigned)p.frame.type, (unsigned long)p.frame.seq,
                   (unsigned long)p.frame.timestamp_us);
            print_hex(p.frame.payload, p.frame.payload_len);
            printf("\n");
        }
        hi = -1;
    }
    printf("stats ok=%lu crc=%lu malformed=%lu version=%lu oversize=%lu resyncs=%lu\n",
           (unsigned long)p.stats.frames_ok, (unsigned long)p.stats.crc_errors,
           (unsigned long)p.stats.malformed, (unsigned long)p.stats.version_mismatch,
           (unsigned long)p.stats.oversize, (unsigned long)p.stats.resyncs);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--vectors") == 0) return vectors();
    if (argc > 1 && strcmp(argv[1], "--parse") == 0) return parse_stdin();
    test_crc();
    test_cobs_vectors();
    test_cobs_random();
    test_seq_and_finite();
    test_roundtrip_all();
    test_parser_resync();
    test_parser_random_garbage();
    test_ctrl();
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail == 0 ? 0 : 1;
}
