/* kdp_ctrl.c - controller-side protocol logic (see kdp_ctrl.h and PROTOCOL.md). */
#include "kdp_ctrl.h"

#include <string.h>

static size_t send_msg(kdp_ctrl_t *c, uint8_t type, uint32_t now_us, const void *msg, uint32_t *seq_out) {
    size_t n = kdp_writer_msg(&c->tx, type, now_us, msg, seq_out);
    if (n != 0 && c->cfg.write != NULL) {
        c->cfg.write(c->cfg.write_ctx, c->tx.wire, n);
        c->stats.tx_frames++;
    }
    return n;
}

static void zero_outputs(kdp_ctrl_t *c) {
    memset(c->outputs, 0, sizeof c->outputs);
    c->active = 0;
    c->saturated = 0;
}

void kdp_ctrl_init(kdp_ctrl_t *c, const kdp_ctrl_config_t *cfg) {
    memset(c, 0, sizeof *c);
    c->cfg = *cfg;
    kdp_parser_init(&c->rx);
    kdp_writer_init(&c->tx);
}

void kdp_ctrl_fault(kdp_ctrl_t *c, uint32_t now_us, uint8_t type, uint16_t code, const char *text) {
    kdp_fault_t f;
    size_t n = text ? strlen(text) : 0;
    if (n > KDP_MAX_TEXT_LEN) n = KDP_MAX_TEXT_LEN;
    f.code = code;
    f.text_len = (uint8_t)n;
    if (n) memcpy(f.text, text, n);
    f.text[n] = '\0';
    send_msg(c, type, now_us, &f, NULL);
}

static void send_hello(kdp_ctrl_t *c, uint32_t now_us, uint32_t nonce) {
    kdp_hello_t h;
    size_t n = c->cfg.fw_name ? strlen(c->cfg.fw_name) : 0;
    memset(&h, 0, sizeof h);
    if (n > KDP_MAX_NAME_LEN) n = KDP_MAX_NAME_LEN;
    h.nonce = nonce;
    h.boot_id = c->cfg.boot_id;
    h.fw_version = c->cfg.fw_version;
    h.fw_signature = c->cfg.fw_signature;
    h.state_period_us = c->cfg.state_period_us;
    h.proto_version = (uint8_t)KDP_PROTO_VERSION;
    h.state_dim = c->cfg.state_dim;
    h.action_dim = c->cfg.action_dim;
    h.max_valid_for_ms = c->cfg.max_valid_for_ms;
    h.capabilities = 0;
    memcpy(h.action_min, c->cfg.action_min, sizeof h.action_min);
    memcpy(h.action_max, c->cfg.action_max, sizeof h.action_max);
    h.name_len = (uint8_t)n;
    if (n) memcpy(h.fw_name, c->cfg.fw_name, n);
    send_msg(c, KDP_MSG_HELLO, now_us, &h, NULL);
}

void kdp_ctrl_boot(kdp_ctrl_t *c, uint32_t now_us, uint8_t reset_cause) {
    kdp_reset_t r;
    r.boot_id = c->cfg.boot_id;
    r.cause = reset_cause;
    send_msg(c, KDP_MSG_RESET, now_us, &r, NULL);
    send_hello(c, now_us, 0);
}

static void reject(kdp_ctrl_t *c, uint32_t now_us, const char *why) {
    c->stats.actions_rejected++;
    if (!c->rejected_since_state) { /* at most one BAD_ACTION fault per STATE period */
        kdp_ctrl_fault(c, now_us, KDP_MSG_FAULT, KDP_FAULT_BAD_ACTION, why);
    }
    c->rejected_since_state = 1;
}

static void handle_action(kdp_ctrl_t *c, const kdp_header_t *hdr, uint32_t now_us) {
    kdp_action_t a;
    uint16_t valid_ms;
    uint8_t i, sat = 0;
    if (kdp_decode_action(hdr->payload, hdr->payload_len, &a) != KDP_OK) return;
    if (c->estop) { reject(c, now_us, "e-stop latched"); return; }
    if (a.action_dim != c->cfg.action_dim) { reject(c, now_us, "wrong action_dim"); return; }
    if (a.valid_for_ms == 0) { reject(c, now_us, "valid_for_ms is 0"); return; }
    for (i = 0; i < a.action_dim; i++) {
        if (!kdp_isfinite(a.action[i])) { reject(c, now_us, "non-finite action"); return; }
    }
    if (!c->have_state || kdp_seq_newer(a.state_seq, c->last_state_seq)) {
        reject(c, now_us, "state_seq from the future");
        return;
    }
    if (c->have_accepted && kdp_seq_newer(c->last_accepted_state_seq, a.state_seq)) {
        reject(c, now_us, "stale state_seq");
        return;
    }
    if (c->stopped && !kdp_seq_newer(a.state_seq, c->stop_state_seq)) {
        reject(c, now_us, "planned before STOP");
        return;
    }
    for (i = 0; i < a.action_dim; i++) {
        float v = a.action[i];
        if (v < c->cfg.action_min[i]) { v = c->cfg.action_min[i]; sat = 1; }
        if (v > c->cfg.action_max[i]) { v = c->cfg.action_max[i]; sat = 1; }
        c->outputs[i] = v;
    }
    valid_ms = a.valid_for_ms;
    if (valid_ms > c->cfg.max_valid_for_ms) valid_ms = c->cfg.max_valid_for_ms;
    c->deadline_us = now_us + (uint32_t)valid_ms * 1000u;
    c->active = 1;
    c->saturated = sat;
    c->watchdog_tripped = 0;
    c->stopped = 0;
    c->have_accepted = 1;
    c->last_accepted_state_seq = a.state_seq;
    c->last_action_seq = hdr->seq;
    c->stats.actions_accepted++;
}

static void handle_frame(kdp_ctrl_t *c, const kdp_header_t *hdr, uint32_t now_us) {
    switch (hdr->type) {
    case KDP_MSG_ACTION: handle_action(c, hdr, now_us); break;
    case KDP_MSG_HELLO_REQ: {
        kdp_hello_req_t r;
        if (kdp_decode_hello_req(hdr->payload, hdr->payload_len, &r) == KDP_OK) {
            c->stats.hellos++;
            send_hello(c, now_us, r.nonce);
        }
        break;
    }
    case KDP_MSG_HEARTBEAT: {
        kdp_heartbeat_t h;
        if (kdp_decode_heartbeat(hdr->payload, hdr->payload_len, &h) == KDP_OK && !h.is_reply) {
            c->stats.heartbeats++;
            h.boot_id = c->cfg.boot_id;
            h.is_reply = 1;
            send_msg(c, KDP_MSG_HEARTBEAT, now_us, &h, NULL);
        }
        break;
    }
    case KDP_MSG_STOP:
        zero_outputs(c);
        c->stopped = 1;
        c->stop_state_seq = c->last_state_seq;
        c->stats.stops++;
        break;
    case KDP_MSG_ESTOP:
        zero_outputs(c);
        c->estop = 1;
        break;
    case KDP_MSG_FAULT: c->stats.host_faults++; break;
    default: break; /* HELLO, STATE, RESET are controller -> host only */
    }
}

void kdp_ctrl_rx_byte(kdp_ctrl_t *c, uint8_t byte, uint32_t now_us) {
    if (kdp_parser_push(&c->rx, byte)) handle_frame(c, &c->rx.frame, now_us);
}

void kdp_ctrl_poll(kdp_ctrl_t *c, uint32_t now_us) {
    if (c->active && (int32_t)(now_us - c->deadline_us) >= 0) {
        zero_outputs(c);
        c->watchdog_tripped = 1;
        c->stats.watchdog_trips++;
        kdp_ctrl_fault(c, now_us, KDP_MSG_FAULT, KDP_FAULT_WATCHDOG, "action expired, outputs zeroed");
    }
}

uint16_t kdp_ctrl_flags(const kdp_ctrl_t *c) {
    uint16_t f = 0;
    if (c->watchdog_tripped) f |= KDP_FLAG_WATCHDOG_TRIPPED;
    if (c->estop) f |= KDP_FLAG_ESTOP;
    if (c->stopped) f |= KDP_FLAG_STOPPED;
    if (c->active) f |= KDP_FLAG_ACTIVE;
    if (c->active && c->saturated) f |= KDP_FLAG_SATURATED;
    if (c->rejected_since_state) f |= KDP_FLAG_ACTION_REJECTED;
    return f;
}

void kdp_ctrl_send_state(kdp_ctrl_t *c, uint32_t now_us, const float *state, uint16_t extra_flags) {
    kdp_state_t s;
    uint32_t seq;
    s.boot_id = c->cfg.boot_id;
    s.last_action_seq = c->last_action_seq;
    s.flags = (uint16_t)(kdp_ctrl_flags(c) | extra_flags);
    s.state_dim = c->cfg.state_dim;
    memcpy(s.state, state, (size_t)c->cfg.state_dim * sizeof(float));
    if (send_msg(c, KDP_MSG_STATE, now_us, &s, &seq) == 0) return;
    c->last_state_seq = seq;
    c->have_state = 1;
    c->rejected_since_state = 0;
}

void kdp_ctrl_estop(kdp_ctrl_t *c, uint32_t now_us, uint16_t code, const char *text) {
    zero_outputs(c);
    c->estop = 1;
    kdp_ctrl_fault(c, now_us, KDP_MSG_ESTOP, code, text);
}
