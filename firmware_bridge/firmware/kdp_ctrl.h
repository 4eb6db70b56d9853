/*
 * kdp_ctrl.h - controller-side protocol logic shared by the Arduino sketch and the
 * virtual controller: HELLO / HEARTBEAT answers, ACTION acceptance rules, clamping to
 * the advertised limits, the ACTION watchdog, STOP and the latched e-stop.
 *
 * Portable C99, no malloc, no stdio. Time is a wrapping u32 microsecond clock supplied
 * by the caller (Arduino micros()). Bytes go out through the write callback.
 *
 * Typical use:
 *     kdp_ctrl_init(&ctl, &cfg);                      // once
 *     kdp_ctrl_boot(&ctl, micros(), KDP_RESET_POWER_ON);
 *     loop: while (uart has byte) kdp_ctrl_rx_byte(&ctl, byte, micros());
 *           kdp_ctrl_poll(&ctl, micros());            // watchdog
 *           apply kdp_ctrl_outputs(&ctl) to the motors
 *           every period: kdp_ctrl_send_state(&ctl, micros(), sensors, 0);
 */
#ifndef KDP_CTRL_H
#define KDP_CTRL_H

#include "kdp_proto.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*kdp_write_fn)(void *ctx, const uint8_t *data, size_t len);

typedef struct {
    uint8_t state_dim;
    uint8_t action_dim;
    float action_min[KDP_MAX_ACTION_DIM];
    float action_max[KDP_MAX_ACTION_DIM];
    uint16_t max_valid_for_ms; /* cap on an ACTION's valid_for_ms (watchdog), e.g. 500 */
    uint32_t state_period_us;
    uint32_t boot_id;          /* nonzero, different on every boot */
    uint32_t fw_version;
    uint32_t fw_signature;
    const char *fw_name;       /* <= 32 bytes */
    kdp_write_fn write;
    void *write_ctx;
} kdp_ctrl_config_t;

typedef struct {
    uint32_t actions_accepted;
    uint32_t actions_rejected;
    uint32_t watchdog_trips;
    uint32_t stops;
    uint32_t hellos;
    uint32_t heartbeats;
    uint32_t host_faults;
    uint32_t tx_frames;
} kdp_ctrl_stats_t;

typedef struct {
    kdp_ctrl_config_t cfg;
    kdp_parser_t rx;
    kdp_writer_t tx;
    float outputs[KDP_MAX_ACTION_DIM]; /* what the motors get; zero unless ACTIVE */
    uint8_t active;
    uint8_t watchdog_tripped;
    uint8_t stopped;
    uint8_t estop;
    uint8_t saturated;
    uint8_t rejected_since_state;
    uint8_t have_state;
    uint8_t have_accepted;
    uint32_t deadline_us;          /* watchdog deadline of the active ACTION */
    uint32_t last_state_seq;       /* seq of the newest STATE sent */
    uint32_t last_accepted_state_seq;
    uint32_t last_action_seq;      /* header seq of the last accepted ACTION */
    uint32_t stop_state_seq;       /* newest STATE seq when STOP arrived */
    kdp_ctrl_stats_t stats;
} kdp_ctrl_t;

void kdp_ctrl_init(kdp_ctrl_t *c, const kdp_ctrl_config_t *cfg);
/* Send the RESET notice and an unsolicited HELLO (call once after boot). */
void kdp_ctrl_boot(kdp_ctrl_t *c, uint32_t now_us, uint8_t reset_cause);
/* Feed one received byte; handles complete frames. */
void kdp_ctrl_rx_byte(kdp_ctrl_t *c, uint8_t byte, uint32_t now_us);
/* Run the watchdog: zeroes the outputs once the active ACTION's valid_for_ms ran out. */
void kdp_ctrl_poll(kdp_ctrl_t *c, uint32_t now_us);
/* Send a STATE built from state[cfg.state_dim] plus extra_flags (e.g. KDP_FLAG_SENSOR_INVALID). */
void kdp_ctrl_send_state(kdp_ctrl_t *c, uint32_t now_us, const float *state, uint16_t extra_flags);
/* Latch the e-stop locally (button, over-current): outputs zero, ESTOP sent to the host. */
void kdp_ctrl_estop(kdp_ctrl_t *c, uint32_t now_us, uint16_t code, const char *text);
/* Send a FAULT message with a short text. */
void kdp_ctrl_fault(kdp_ctrl_t *c, uint32_t now_us, uint8_t type, uint16_t code, const char *text);
/* Current flags that the next STATE will carry (without one-shot bits cleared). */
uint16_t kdp_ctrl_flags(const kdp_ctrl_t *c);

#ifdef __cplusplus
}
#endif

#endif /* KDP_CTRL_H */
