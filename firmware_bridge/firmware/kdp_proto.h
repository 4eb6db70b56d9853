/*
 * kdp_proto.h - portable core of the kdp-edge serial protocol, version 1.
 *
 * C99, no malloc, no stdio, no global state: every buffer lives in a struct
 * the caller owns (make them static on a microcontroller). The byte layout is
 * specified in firmware_bridge/PROTOCOL.md and mirrored by
 * firmware_bridge/protocol.py.
 *
 *   wire = COBS(raw) 0x00
 *   raw  = header(12) payload crc16_le      (CRC-16/CCITT-FALSE over header+payload)
 *   header = version u8, msg_type u8, seq u32, timestamp_us u32 (wraps), payload_len u16
 *
 * Receiving: kdp_parser_push() takes one byte at a time and does O(1) work per
 * byte (incremental COBS decode + incremental CRC), plus O(payload) checks
 * when the 0x00 delimiter arrives, so it can run from a UART RX interrupt.
 * The completed frame stays valid in the parser until the next push.
 *
 * Sending: kdp_writer_msg() builds a complete wire frame for a message struct
 * in the writer's own buffer and advances the writer's seq counter.
 *
 * Floats must be IEEE-754 binary32 (true on AVR, ARM Cortex-M, ESP32, RP2040, x86).
 */
#ifndef KDP_PROTO_H
#define KDP_PROTO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KDP_PROTO_VERSION 1u
#define KDP_HEADER_SIZE 12u
#define KDP_CRC_SIZE 2u
#define KDP_MAX_STATE_DIM 64u
#define KDP_MAX_ACTION_DIM 16u
#define KDP_MAX_NAME_LEN 32u
#define KDP_MAX_TEXT_LEN 64u
#define KDP_MAX_PAYLOAD (12u + 4u * KDP_MAX_STATE_DIM)                            /* 268 */
#define KDP_MAX_RAW_FRAME (KDP_HEADER_SIZE + KDP_MAX_PAYLOAD + KDP_CRC_SIZE)        /* 282 */
#define KDP_MAX_ENCODED_FRAME (KDP_MAX_RAW_FRAME + KDP_MAX_RAW_FRAME / 254u + 1u)  /* 284 */
#define KDP_MAX_WIRE_FRAME (KDP_MAX_ENCODED_FRAME + 1u)                            /* 285 */
#define KDP_MIN_RAW_FRAME (KDP_HEADER_SIZE + KDP_CRC_SIZE)

typedef enum {
    KDP_MSG_HELLO_REQ = 0x01,
    KDP_MSG_HELLO = 0x02,
    KDP_MSG_STATE = 0x03,
    KDP_MSG_ACTION = 0x04,
    KDP_MSG_HEARTBEAT = 0x05,
    KDP_MSG_FAULT = 0x06,
    KDP_MSG_ESTOP = 0x07,
    KDP_MSG_STOP = 0x08,
    KDP_MSG_RESET = 0x09
} kdp_msg_type_t;

/* STATE flags */
#define KDP_FLAG_WATCHDOG_TRIPPED (1u << 0)
#define KDP_FLAG_ESTOP (1u << 1)
#define KDP_FLAG_STOPPED (1u << 2)
#define KDP_FLAG_ACTIVE (1u << 3)
#define KDP_FLAG_SATURATED (1u << 4)
#define KDP_FLAG_FAULT (1u << 5)
#define KDP_FLAG_ACTION_REJECTED (1u << 6)
#define KDP_FLAG_SENSOR_INVALID (1u << 7)
#define KDP_FLAG_SUCCESS (1u << 8)

/* FAULT / ESTOP codes */
#define KDP_FAULT_NONE 0u
#define KDP_FAULT_WATCHDOG 1u
#define KDP_FAULT_BAD_ACTION 2u
#define KDP_FAULT_SENSOR 3u
#define KDP_FAULT_OVERCURRENT 4u
#define KDP_FAULT_PROTOCOL 5u
#define KDP_FAULT_HOST 6u

/* RESET causes */
#define KDP_RESET_UNKNOWN 0u
#define KDP_RESET_POWER_ON 1u
#define KDP_RESET_WATCHDOG 2u
#define KDP_RESET_BROWN_OUT 3u
#define KDP_RESET_SOFTWARE 4u
#define KDP_RESET_EXTERNAL 5u

/* Return codes (0 = ok) */
#define KDP_OK 0
#define KDP_ERR_COBS (-1)
#define KDP_ERR_CRC (-2)
#define KDP_ERR_LENGTH (-3)
#define KDP_ERR_VERSION (-4)
#define KDP_ERR_TYPE (-5)
#define KDP_ERR_PAYLOAD (-6)
#define KDP_ERR_RANGE (-7)

/* ---- messages --------------------------------------------------------- */

typedef struct {
    uint8_t version;
    uint8_t type;
    uint32_t seq;
    uint32_t timestamp_us;
    uint16_t payload_len;
    const uint8_t *payload; /* points into the parser's buffer */
} kdp_header_t;

typedef struct {
    uint32_t nonce;
} kdp_hello_req_t;

typedef struct {
    uint32_t nonce;
    uint32_t boot_id;
    uint32_t fw_version; /* major << 16 | minor << 8 | patch */
    uint32_t fw_signature;
    uint32_t state_period_us;
    uint8_t proto_version;
    uint8_t state_dim;
    uint8_t action_dim;
    uint16_t max_valid_for_ms;
    uint16_t capabilities;
    float action_min[KDP_MAX_ACTION_DIM];
    float action_max[KDP_MAX_ACTION_DIM];
    uint8_t name_len;
    char fw_name[KDP_MAX_NAME_LEN + 1]; /* NUL-terminated after decode */
} kdp_hello_t;

typedef struct {
    uint32_t boot_id;
    uint32_t last_action_seq;
    uint16_t flags;
    uint8_t state_dim;
    float state[KDP_MAX_STATE_DIM];
} kdp_state_t;

typedef struct {
    uint32_t state_seq;
    uint16_t valid_for_ms;
    uint8_t action_dim;
    float action[KDP_MAX_ACTION_DIM];
} kdp_action_t;

typedef struct {
    uint32_t boot_id;
    uint32_t nonce;
    uint8_t is_reply;
} kdp_heartbeat_t;

typedef struct { /* FAULT and ESTOP share this layout */
    uint16_t code;
    uint8_t text_len;
    char text[KDP_MAX_TEXT_LEN + 1]; /* NUL-terminated after decode */
} kdp_fault_t;

typedef struct {
    uint16_t reason;
} kdp_stop_t;

typedef struct {
    uint32_t boot_id;
    uint8_t cause;
} kdp_reset_t;

/* ---- primitives --------------------------------------------------------- */

/* CRC-16/CCITT-FALSE: start with crc = 0xFFFF. */
uint16_t kdp_crc16_update(uint16_t crc, uint8_t byte);
uint16_t kdp_crc16(const uint8_t *data, size_t len);

/* COBS encode; returns encoded length (no delimiter) or 0 if cap is too small. */
size_t kdp_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t cap);
/* COBS decode of one frame without delimiter; returns KDP_OK or KDP_ERR_COBS / KDP_ERR_LENGTH. */
int kdp_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t cap, size_t *out_len);

/* Serial-number arithmetic on u32: nonzero iff a is newer than b. */
int kdp_seq_newer(uint32_t a, uint32_t b);
/* Nonzero iff f is neither NaN nor +-inf (bit test, no libm needed). */
int kdp_isfinite(float f);

/* ---- payload codecs: encoders return the payload length or 0 on invalid input ---- */

size_t kdp_encode_hello_req(const kdp_hello_req_t *m, uint8_t *p, size_t cap);
size_t kdp_encode_hello(const kdp_hello_t *m, uint8_t *p, size_t cap);
size_t kdp_encode_state(const kdp_state_t *m, uint8_t *p, size_t cap);
size_t kdp_encode_action(const kdp_action_t *m, uint8_t *p, size_t cap);
size_t kdp_encode_heartbeat(const kdp_heartbeat_t *m, uint8_t *p, size_t cap);
size_t kdp_encode_fault(const kdp_fault_t *m, uint8_t *p, size_t cap); /* FAULT and ESTOP */
size_t kdp_encode_stop(const kdp_stop_t *m, uint8_t *p, size_t cap);
size_t kdp_encode_reset(const kdp_reset_t *m, uint8_t *p, size_t cap);

/* Decoders return KDP_OK or KDP_ERR_PAYLOAD. */
int kdp_decode_hello_req(const uint8_t *p, size_t len, kdp_hello_req_t *m);
int kdp_decode_hello(const uint8_t *p, size_t len, kdp_hello_t *m);
int kdp_decode_state(const uint8_t *p, size_t len, kdp_state_t *m);
int kdp_decode_action(const uint8_t *p, size_t len, kdp_action_t *m);
int kdp_decode_heartbeat(const uint8_t *p, size_t len, kdp_heartbeat_t *m);
int kdp_decode_fault(const uint8_t *p, size_t len, kdp_fault_t *m);
int kdp_decode_stop(const uint8_t *p, size_t len, kdp_stop_t *m);
int kdp_decode_reset(const uint8_t *p, size_t len, kdp_reset_t *m);

/* Structural check of a payload for its type (what the decoders check). */
int kdp_validate_payload(uint8_t type, const uint8_t *p, size_t len);

/* ---- frames ------------------------------------------------------------ */

/* Write header and CRC around a payload already placed at raw + KDP_HEADER_SIZE.
 * Returns the raw frame length, or 0 if payload_len is too large. */
size_t kdp_frame_pack(uint8_t *raw, uint8_t type, uint32_t seq, uint32_t timestamp_us, uint16_t payload_len);
/* Check a COBS-decoded frame (length, CRC, version, type, payload layout) and fill hdr. */
int kdp_frame_parse(const uint8_t *raw, size_t len, kdp_header_t *hdr);

/* ---- sending ------------------------------------------------------------ */

typedef struct {
    uint32_t seq; /* seq of the next frame */
    uint8_t raw[KDP_MAX_RAW_FRAME];
    uint8_t wire[KDP_MAX_WIRE_FRAME];
} kdp_writer_t;

void kdp_writer_init(kdp_writer_t *w);
/* Build the wire frame for msg (a pointer to the kdp_*_t struct matching type) into w->wire.
 * Returns the wire length (COBS + 0x00), or 0 if msg is invalid. The frame's seq is returned in
 * *seq_out if non-NULL. */
size_t kdp_writer_msg(kdp_writer_t *w, uint8_t type, uint32_t timestamp_us, const void *msg, uint32_t *seq_out);

/* ---- receiving ------------------------------------------------------------ */

typedef struct {
    uint32_t frames_ok;
    uint32_t crc_errors;
    uint32_t malformed; /* bad COBS, too short, length mismatch, unknown type, bad payload */
    uint32_t version_mismatch;
    uint32_t oversize;
    uint32_t resyncs; /* good frames directly after rejected input */
} kdp_parser_stats_t;

typedef struct {
    uint8_t raw[KDP_MAX_RAW_FRAME];
    uint16_t raw_len;
    uint16_t enc_len;
    uint16_t crc;           /* CRC over raw[0 .. raw_len-3] (two-byte delay line) */
    uint8_t remaining;      /* data bytes left in the current COBS block; 0 -> next is a code byte */
    uint8_t pending_zero;   /* the previous block implies a zero before the next block */
    uint8_t discarding;     /* current frame is bad: drop bytes until the delimiter */
    uint8_t lost_sync;
    kdp_header_t frame;     /* valid after kdp_parser_push() returned 1, until the next push */
    kdp_parser_stats_t stats;
} kdp_parser_t;

void kdp_parser_init(kdp_parser_t *p);
/* Feed one byte. Returns 1 when a valid frame completed (see p->frame), 0 otherwise. Never fails. */
int kdp_parser_push(kdp_parser_t *p, uint8_t byte);

#ifdef __cplusplus
}
#endif

#endif /* KDP_PROTO_H */
