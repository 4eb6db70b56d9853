/* kdp_proto.c - portable core of the kdp-edge serial protocol v1 (see kdp_proto.h). */
#include "kdp_proto.h"

#include <string.h>

typedef char kdp_static_assert_float_is_32bit[(sizeof(float) == 4) ? 1 : -1];

/* ---- little-endian helpers ---------------------------------------------- */

static void put_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)(v >> 24);
}

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | ((uint16_t)p[1] << 8)); }

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void put_f32(uint8_t *p, float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    put_u32(p, u);
}

static float get_f32(const uint8_t *p) {
    uint32_t u = get_u32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- primitives ------------------------------------------------------------ */

uint16_t kdp_crc16_update(uint16_t crc, uint8_t byte) {
    int i;
    crc ^= (uint16_t)((uint16_t)byte << 8);
    for (i = 0; i < 8; i++) {
        unsigned int shifted = ((unsigned int)crc << 1) & 0xFFFFu;
        crc = (uint16_t)((crc & 0x8000u) ? (shifted ^ 0x1021u) : shifted);
    }
    return crc;
}

uint16_t kdp_crc16(const uint8_t *data, size_t len) {
    uint16_t crc = 0xFFFFu;
    size_t i;
    for (i = 0; i < len; i++) crc = kdp_crc16_update(crc, data[i]);
    return crc;
}

size_t kdp_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t cap) {
    /* Same output as the Python `cobs` package: a block of 254 non-zero bytes that ends the
     * input is not followed by an empty block. */
    size_t r, w = 1, code_pos = 0;
    uint8_t code = 1;
    if (cap < len + len / 254u + 1u) return 0;
    for (r = 0; r < len; r++) {
        if (in[r] == 0) {
            out[code_pos] = code;
            code_pos = w++;
            code = 1;
        } else {
            out[w++] = in[r];
            if (++code == 0xFFu) {
                out[code_pos] = code;
                if (r + 1u == len) return w;
                code_pos = w++;
                code = 1;
            }
        }
    }
    out[code_pos] = code;
    return w;
}

int kdp_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t cap, size_t *out_len) {
    size_t r = 0, w = 0;
    while (r < len) {
        uint8_t code = in[r++];
        uint8_t i;
        if (code == 0) return KDP_ERR_COBS;
        for (i = 1; i < code; i++) {
            if (r >= len || in[r] == 0) return KDP_ERR_COBS;
            if (w >= cap) return KDP_ERR_LENGTH;
            out[w++] = in[r++];
        }
        if (code != 0xFF && r < len) {
            if (w >= cap) return KDP_ERR_LENGTH;
            out[w++] = 0;
        }
    }
    *out_len = w;
    return KDP_OK;
}

int kdp_seq_newer(uint32_t a, uint32_t b) {
    uint32_t d = a - b;
    return d != 0u && d < 0x80000000u;
}

int kdp_isfinite(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (u & 0x7F800000u) != 0x7F800000u;
}

/* ---- payload codecs ---------------------------------------------------------- */

#define HELLO_FIXED 28u
#define STATE_FIXED 12u
#define ACTION_FIXED 8u

size_t kdp_encode_hello_req(const kdp_hello_req_t *m, uint8_t *p, size_t cap) {
    if (cap < 4) return 0;
    put_u32(p, m->nonce);
    return 4;
}

size_t kdp_encode_hello(const kdp_hello_t *m, uint8_t *p, size_t cap) {
    size_t a = m->action_dim, n = m->name_len, i, len;
    if (m->state_dim < 1 || m->state_dim > KDP_MAX_STATE_DIM) return 0;
    if (a < 1 || a > KDP_MAX_ACTION_DIM || n > KDP_MAX_NAME_LEN) return 0;
    len = HELLO_FIXED + 8u * a + n;
    if (cap < len) return 0;
    put_u32(p + 0, m->nonce);
    put_u32(p + 4, m->boot_id);
    put_u32(p + 8, m->fw_version);
    put_u32(p + 12, m->fw_signature);
    put_u32(p + 16, m->state_period_us);
    p[20] = m->proto_version;
    p[21] = m->state_dim;
    p[22] = m->action_dim;
    p[23] = (uint8_t)n;
    put_u16(p + 24, m->max_valid_for_ms);
    put_u16(p + 26, m->capabilities);
    for (i = 0; i < a; i++) {
        put_f32(p + HELLO_FIXED + 4u * i, m->action_min[i]);
        put_f32(p + HELLO_FIXED + 4u * (a + i), m->action_max[i]);
    }
    memcpy(p + HELLO_FIXED + 8u * a, m->fw_name, n);
    return len;
}

size_t kdp_encode_state(const kdp_state_t *m, uint8_t *p, size_t cap) {
    size_t d = m->state_dim, i, len = STATE_FIXED + 4u * d;
    if (d < 1 || d > KDP_MAX_STATE_DIM || cap < len) return 0;
    put_u32(p + 0, m->boot_id);
    put_u32(p + 4, m->last_action_seq);
    put_u16(p + 8, m->flags);
    p[10] = m->state_dim;
    p[11] = 0;
    for (i = 0; i < d; i++) put_f32(p + STATE_FIXED + 4u * i, m->state[i]);
    return len;
}

size_t kdp_encode_action(const kdp_action_t *m, uint8_t *p, size_t cap) {
    size_t d = m->action_dim, i, len = ACTION_FIXED + 4u * d;
    if (d < 1 || d > KDP_MAX_ACTION_DIM || cap < len) return 0;
    put_u32(p + 0, m->state_seq);
    put_u16(p + 4, m->valid_for_ms);
    p[6] = m->action_dim;
    p[7] = 0;
    for (i = 0; i < d; i++) put_f32(p + ACTION_FIXED + 4u * i, m->action[i]);
    return len;
}

size_t kdp_encode_heartbeat(const kdp_heartbeat_t *m, uint8_t *p, size_t cap) {
    if (cap < 9 || m->is_reply > 1) return 0;
    put_u32(p + 0, m->boot_id);
    put_u32(p + 4, m->nonce);
    p[8] = m->is_reply;
    return 9;
}

size_t kdp_encode_fault(const kdp_fault_t *m, uint8_t *p, size_t cap) {
    size_t n = m->text_len;
    if (n > KDP_MAX_TEXT_LEN || cap < 3u + n) return 0;
    put_u16(p, m->code);
    p[2] = (uint8_t)n;
    memcpy(p + 3, m->text, n);
    return 3u + n;
}

size_t kdp_encode_stop(const kdp_stop_t *m, uint8_t *p, size_t cap) {
    if (cap < 2) return 0;
    put_u16(p, m->reason);
    return 2;
}

size_t kdp_encode_reset(const kdp_reset_t *m, uint8_t *p, size_t cap) {
    if (cap < 5) return 0;
    put_u32(p, m->boot_id);
    p[4] = m->cause;
    return 5;
}

int kdp_validate_payload(uint8_t type, const uint8_t *p, size_t len) {
    switch (type) {
    case KDP_MSG_HELLO_REQ: return len == 4 ? KDP_OK : KDP_ERR_PAYLOAD;
    case KDP_MSG_HELLO: {
        size_t s, a, n;
        if (len < HELLO_FIXED) return KDP_ERR_PAYLOAD;
        s = p[21];
        a = p[22];
        n = p[23];
        if (s < 1 || s > KDP_MAX_STATE_DIM || a < 1 || a > KDP_MAX_ACTION_DIM || n > KDP_MAX_NAME_LEN)
            return KDP_ERR_PAYLOAD;
        return len == HELLO_FIXED + 8u * a + n ? KDP_OK : KDP_ERR_PAYLOAD;
    }
    case KDP_MSG_STATE:
        if (len < STATE_FIXED) return KDP_ERR_PAYLOAD;
        if (p[10] < 1 || p[10] > KDP_MAX_STATE_DIM) return KDP_ERR_PAYLOAD;
        return len == STATE_FIXED + 4u * p[10] ? KDP_OK : KDP_ERR_PAYLOAD;
    case KDP_MSG_ACTION:
        if (len < ACTION_FIXED) return KDP_ERR_PAYLOAD;
        if (p[6] < 1 || p[6] > KDP_MAX_ACTION_DIM) return KDP_ERR_PAYLOAD;
        return len == ACTION_FIXED + 4u * p[6] ? KDP_OK : KDP_ERR_PAYLOAD;
    case KDP_MSG_HEARTBEAT: return (len == 9 && p[8] <= 1) ? KDP_OK : KDP_ERR_PAYLOAD;
    case KDP_MSG_FAULT:
    case KDP_MSG_ESTOP:
        if (len < 3 || p[2] > KDP_MAX_TEXT_LEN) return KDP_ERR_PAYLOAD;
        return len == 3u + p[2] ? KDP_OK : KDP_ERR_PAYLOAD;
    case KDP_MSG_STOP: return len == 2 ? KDP_OK : KDP_ERR_PAYLOAD;
    case KDP_MSG_RESET: return len == 5 ? KDP_OK : KDP_ERR_PAYLOAD;
    default: return KDP_ERR_TYPE;
    }
}

int kdp_decode_hello_req(const uint8_t *p, size_t len, kdp_hello_req_t *m) {
    if (kdp_validate_payload(KDP_MSG_HELLO_REQ, p, len) != KDP_OK) return KDP_ERR_PAYLOAD;
    m->nonce = get_u32(p);
    return KDP_OK;
}

int kdp_decode_hello(const uint8_t *p, size_t len, kdp_hello_t *m) {
    size_t a, i;
    if (kdp_validate_payload(KDP_MSG_HELLO, p, len) != KDP_OK) return KDP_ERR_PAYLOAD;
    m->nonce = get_u32(p + 0);
    m->boot_id = get_u32(p + 4);
    m->fw_version = get_u32(p + 8);
    m->fw_signature = get_u32(p + 12);
    m->state_period_us = get_u32(p + 16);
    m->proto_version = p[20];
    m->state_dim = p[21];
    m->action_dim = p[22];
    m->name_len = p[23];
    m->max_valid_for_ms = get_u16(p + 24);
    m->capabilities = get_u16(p + 26);
    a = m->action_dim;
    for (i = 0; i < a; i++) {
        m->action_min[i] = get_f32(p + HELLO_FIXED + 4u * i);
        m->action_max[i] = get_f32(p + HELLO_FIXED + 4u * (a + i));
    }
    memcpy(m->fw_name, p + HELLO_FIXED + 8u * a, m->name_len);
    m->fw_name[m->name_len] = '\0';
    return KDP_OK;
}

int kdp_decode_state(const uint8_t *p, size_t len, kdp_state_t *m) {
    size_t i;
    if (kdp_validate_payload(KDP_MSG_STATE, p, len) != KDP_OK) return KDP_ERR_PAYLOAD;
    m->boot_id = get_u32(p + 0);
    m->last_action_seq = get_u32(p + 4);
    m->flags = get_u16(p + 8);
    m->state_dim = p[10];
    for (i = 0; i < m->state_dim; i++) m->state[i] = get_f32(p + STATE_FIXED + 4u * i);
    return KDP_OK;
}

int kdp_decode_action(const uint8_t *p, size_t len, kdp_action_t *m) {
    size_t i;
    if (kdp_validate_payload(KDP_MSG_ACTION, p, len) != KDP_OK) return KDP_ERR_PAYLOAD;
    m->state_seq = get_u32(p + 0);
    m->valid_for_ms = get_u16(p + 4);
    m->action_dim = p[6];
    for (i = 0; i < m->action_dim; i++) m->action[i] = get_f32(p + ACTION_FIXED + 4u * i);
    return KDP_OK;
}

int kdp_decode_heartbeat(const uint8_t *p, size_t len, kdp_heartbeat_t *m) {
    if (kdp_validate_payload(KDP_MSG_HEARTBEAT, p, len) != KDP_OK) return KDP_ERR_PAYLOAD;
    m->boot_id = get_u32(p);
    m->nonce = get_u32(p + 4);
    m->is_reply = p[8];
    return KDP_OK;
}

int kdp_decode_fault(const uint8_t *p, size_t len, kdp_fault_t *m) {
    if (kdp_validate_payload(KDP_MSG_FAULT, p, len) != KDP_OK) return KDP_ERR_PAYLOAD;
    m->code = get_u16(p);
    m->text_len = p[2];
    memcpy(m->text, p + 3, m->text_len);
    m->text[m->text_len] = '\0';
    return KDP_OK;
}

int kdp_decode_stop(const uint8_t *p, size_t len, kdp_stop_t *m) {
    if (kdp_validate_payload(KDP_MSG_STOP, p, len) != KDP_OK) return KDP_ERR_PAYLOAD;
    m->reason = get_u16(p);
    return KDP_OK;
}

int kdp_decode_reset(const uint8_t *p, size_t len, kdp_reset_t *m) {
    if (kdp_validate_payload(KDP_MSG_RESET, p, len) != KDP_OK) return KDP_ERR_PAYLOAD;
    m->boot_id = get_u32(p);
    m->cause = p[4];
    return KDP_OK;
}

/* ---- frames ------------------------------------------------------------------ */

size_t kdp_frame_pack(uint8_t *raw, uint8_t type, uint32_t seq, uint32_t timestamp_us, uint16_t payload_len) {
    size_t n;
    uint16_t crc;
    if (payload_len > KDP_MAX_PAYLOAD) return 0;
    raw[0] = (uint8_t)KDP_PROTO_VERSION;
    raw[1] = type;
    put_u32(raw + 2, seq);
    put_u32(raw + 6, timestamp_us);
    put_u16(raw + 10, payload_len);
    n = KDP_HEADER_SIZE + payload_len;
    crc = kdp_crc16(raw, n);
    put_u16(raw + n, crc);
    return n + KDP_CRC_SIZE;
}

int kdp_frame_parse(const uint8_t *raw, size_t len, kdp_header_t *hdr) {
    uint16_t plen;
    int rc;
    if (len < KDP_MIN_RAW_FRAME || len > KDP_MAX_RAW_FRAME) return KDP_ERR_LENGTH;
    if (kdp_crc16(raw, len - 2u) != get_u16(raw + len - 2u)) return KDP_ERR_CRC;
    plen = get_u16(raw + 10);
    if ((size_t)plen != len - KDP_MIN_RAW_FRAME) return KDP_ERR_LENGTH;
    if (raw[0] != KDP_PROTO_VERSION) return KDP_ERR_VERSION;
    rc = kdp_validate_payload(raw[1], raw + KDP_HEADER_SIZE, plen);
    if (rc != KDP_OK) return rc;
    hdr->version = raw[0];
    hdr->type = raw[1];
    hdr->seq = get_u32(raw + 2);
    hdr->timestamp_us = get_u32(raw + 6);
    hdr->payload_len = plen;
    hdr->payload = raw + KDP_HEADER_SIZE;
    return KDP_OK;
}

/* ---- writer -------------------------------------------------------------------- */

void kdp_writer_init(kdp_writer_t *w) { w->seq = 0; }

size_t kdp_writer_msg(kdp_writer_t *w, uint8_t type, uint32_t timestamp_us, const void *msg, uint32_t *seq_out) {
    uint8_t *p = w->raw + KDP_HEADER_SIZE;
    size_t cap = KDP_MAX_PAYLOAD, plen, raw_len, enc_len;
    switch (type) {
    case KDP_MSG_HELLO_REQ: plen = kdp_encode_hello_req((const kdp_hello_req_t *)msg, p, cap); break;
    case KDP_MSG_HELLO: plen = kdp_encode_hello((const kdp_hello_t *)msg, p, cap); break;
    case KDP_MSG_STATE: plen = kdp_encode_state((const kdp_state_t *)msg, p, cap); break;
    case KDP_MSG_ACTION: plen = kdp_encode_action((const kdp_action_t *)msg, p, cap); break;
    case KDP_MSG_HEARTBEAT: plen = kdp_encode_heartbeat((const kdp_heartbeat_t *)msg, p, cap); break;
    case KDP_MSG_FAULT:
    case KDP_MSG_ESTOP: plen = kdp_encode_fault((const kdp_fault_t *)msg, p, cap); break;
    case KDP_MSG_STOP: plen = kdp_encode_stop((const kdp_stop_t *)msg, p, cap); break;
    case KDP_MSG_RESET: plen = kdp_encode_reset((const kdp_reset_t *)msg, p, cap); break;
    default: return 0;
    }
    if (plen == 0) return 0;
    raw_len = kdp_frame_pack(w->raw, type, w->seq, timestamp_us, (uint16_t)plen);
    if (raw_len == 0) return 0;
    enc_len = kdp_cobs_encode(w->raw, raw_len, w->wire, KDP_MAX_ENCODED_FRAME);
    if (enc_len == 0) return 0;
    w->wire[enc_len] = 0;
    if (seq_out) *seq_out = w->seq;
    w->seq++;
    return enc_len + 1u;
}

/* ---- streaming parser ------------------------------------------------------------ */

static void parser_restart(kdp_parser_t *p) {
    p->raw_len = 0;
    p->enc_len = 0;
    p->crc = 0xFFFFu;
    p->remaining = 0;
    p->pending_zero = 0;
    p->discarding = 0;
}

void kdp_parser_init(kdp_parser_t *p) {
    memset(&p->stats, 0, sizeof p->stats);
    memset(&p->frame, 0, sizeof p->frame);
    p->lost_sync = 0;
    parser_restart(p);
}

static int parser_emit(kdp_parser_t *p, uint8_t b) {
    if (p->raw_len >= KDP_MAX_RAW_FRAME) return 0;
    p->raw[p->raw_len++] = b;
    if (p->raw_len > 2u) p->crc = kdp_crc16_update(p->crc, p->raw[p->raw_len - 3u]);
    return 1;
}

static void parser_oversize(kdp_parser_t *p) {
    p->stats.oversize++;
    p->discarding = 1;
    p->lost_sync = 1;
}

static int parser_finish(kdp_parser_t *p) {
    size_t n = p->raw_len;
    uint16_t plen;
    int rc;
    if (p->enc_len == 0 || p->discarding) return 0; /* empty frame, or already counted */
    if (p->remaining != 0 || n < KDP_MIN_RAW_FRAME) {
        p->stats.malformed++;
        p->lost_sync = 1;
        return 0;
    }
    if (p->crc != get_u16(p->raw + n - 2u)) {
        p->stats.crc_errors++;
        p->lost_sync = 1;
        return 0;
    }
    plen = get_u16(p->raw + 10);
    if ((size_t)plen != n - KDP_MIN_RAW_FRAME) {
        p->stats.malformed++;
        p->lost_sync = 1;
        return 0;
    }
    if (p->raw[0] != KDP_PROTO_VERSION) {
        p->stats.version_mismatch++;
        p->lost_sync = 1;
        return 0;
    }
    rc = kdp_validate_payload(p->raw[1], p->raw + KDP_HEADER_SIZE, plen);
    if (rc != KDP_OK) {
        p->stats.malformed++;
        p->lost_sync = 1;
        return 0;
    }
    p->frame.version = p->raw[0];
    p->frame.type = p->raw[1];
    p->frame.seq = get_u32(p->raw + 2);
    p->frame.timestamp_us = get_u32(p->raw + 6);
    p->frame.payload_len = plen;
    p->frame.payload = p->raw + KDP_HEADER_SIZE;
    p->stats.frames_ok++;
    if (p->lost_sync) {
        p->stats.resyncs++;
        p->lost_sync = 0;
    }
    return 1;
}

int kdp_parser_push(kdp_parser_t *p, uint8_t byte) {
    if (byte == 0) {
        int done = parser_finish(p);
        parser_restart(p);
        return done;
    }
    if (p->discarding) return 0;
    if (++p->enc_len > KDP_MAX_ENCODED_FRAME) {
        parser_oversize(p);
        return 0;
    }
    if (p->remaining == 0) { /* code byte */
        if (p->pending_zero && !parser_emit(p, 0)) {
            parser_oversize(p);
            return 0;
        }
        p->remaining = (uint8_t)(byte - 1u);
        p->pending_zero = (uint8_t)(byte != 0xFFu);
    } else {
        if (!parser_emit(p, byte)) {
            parser_oversize(p);
            return 0;
        }
        p->remaining--;
    }
    return 0;
}
