/*
 * kdp_controller.ino - reference motor controller for kdp-edge (protocol v1, PROTOCOL.md).
 *
 * Reads the sensors into a STATE every STATE_PERIOD_US and streams it to the host; applies
 * ACTIONs from the host to PWM outputs, clamped to the advertised limits; zeroes the outputs
 * when no valid ACTION arrived within its valid_for_ms (watchdog), on STOP, and latches an
 * e-stop from the host or from the e-stop button. All protocol rules live in kdp_ctrl.c,
 * shared with the virtual controller that the tests run.
 *
 * Build: `make -C firmware_bridge/firmware arduino-sketch` assembles build/arduino/kdp_controller
 * (this file + kdp_proto.{c,h} + kdp_ctrl.{c,h}); open it in the Arduino IDE or
 * `arduino-cli compile --fqbn <board> build/arduino/kdp_controller`.
 *
 * Baud: 921600 needs a board whose UART can do it (Teensy, RP2040, SAMD21/51, ESP32, STM32) or
 * a native-USB CDC port (baud ignored). A 16 MHz AVR (Uno/Nano) cannot hit 921600 within
 * tolerance: set KDP_BAUD to 500000 or 1000000 there and pass the same --baud on the host.
 *
 * Adapt read_sensors() and apply_outputs() to your hardware; keep loop() non-blocking.
 */
#include "kdp_ctrl.h"

#ifdef __AVR__
#include <avr/wdt.h>
#endif

/* ---- configuration ---------------------------------------------------------- */
#define KDP_BAUD 921600UL
#define STATE_DIM 4
#define ACTION_DIM 2
#define STATE_PERIOD_US 10000UL /* 100 Hz */
#define MAX_VALID_FOR_MS 200    /* the watchdog never waits longer than this */
#define ACTION_LIMIT 1.0f       /* actions are duty cycles in [-1, 1] */
#define FW_VERSION 0x000100UL   /* 0.1.0 */
#define FW_NAME "kdp-arduino 0.1.0"
#define FW_SIGNATURE 0x4B445031UL /* bump when STATE/ACTION semantics change */

static const uint8_t PWM_PINS[ACTION_DIM] = {5, 6};
static const uint8_t DIR_PINS[ACTION_DIM] = {7, 8};
static const uint8_t SENSOR_PINS[STATE_DIM] = {A0, A1, A2, A3};
static const uint8_t ESTOP_PIN = 2; /* e-stop button to GND (active low, internal pull-up) */
static const uint8_t NOISE_PIN = A5; /* floating analog pin used to randomise the boot id */

static kdp_ctrl_t ctl;
static uint32_t next_state_us;
static uint32_t tx_dropped;
static bool sending_state;

/* Do not block the control loop on the UART for STATE: a STATE that does not fit in the TX
 * buffer is dropped (the next one replaces it). Other frames (HELLO, FAULT, RESET, heartbeat
 * replies) are rare and may be larger than a 64-byte AVR TX buffer: they are written blocking
 * (< 1 ms at 921600 baud). */
static void serial_write(void *ctx, const uint8_t *data, size_t len) {
    (void)ctx;
    if (sending_state && (size_t)Serial.availableForWrite() < len) {
        tx_dropped++;
        return;
    }
    Serial.write(data, len);
}

static uint32_t make_boot_id(void) {
    uint32_t id = micros();
    uint8_t i;
    for (i = 0; i < 32; i++) {
        id = (id << 1 | id >> 31) ^ (uint32_t)(analogRead(NOISE_PIN) & 1);
    }
    id ^= (uint32_t)random(0x7FFFFFFFL);
    return id != 0 ? id : 1u;
}

static uint8_t reset_cause(void) {
#ifdef __AVR__
    uint8_t r = MCUSR;
    MCUSR = 0;
    wdt_disable();
    if (r & (1 << WDRF)) return KDP_RESET_WATCHDOG;
    if (r & (1 << BORF)) return KDP_RESET_BROWN_OUT;
    if (r & (1 << EXTRF)) return KDP_RESET_EXTERNAL;
    if (r & (1 << PORF)) return KDP_RESET_POWER_ON;
#endif
    return KDP_RESET_UNKNOWN;
}

/* Sensors -> STATE (controller units). Replace with encoders / IMU; set *flags |=
 * KDP_FLAG_SENSOR_INVALID when a reading cannot be trusted. */
static void read_sensors(float *state, uint16_t *flags) {
    uint8_t i;
    (void)flags;
    for (i = 0; i < STATE_DIM; i++) state[i] = (float)analogRead(SENSOR_PINS[i]) * (5.0f / 1023.0f);
}

/* outputs[i] in [-ACTION_LIMIT, ACTION_LIMIT] -> H-bridge direction pin + PWM duty. */
static void apply_outputs(const float *outputs) {
    uint8_t i;
    for (i = 0; i < ACTION_DIM; i++) {
        float u = outputs[i];
        float mag = u < 0.0f ? -u : u;
        int duty = (int)(mag / ACTION_LIMIT * 255.0f + 0.5f);
        if (duty > 255) duty = 255;
        digitalWrite(DIR_PINS[i], u < 0.0f ? HIGH : LOW);
        analogWrite(PWM_PINS[i], duty);
    }
}

void setup() {
    kdp_ctrl_config_t cfg;
    uint8_t i, cause = reset_cause();
    for (i = 0; i < ACTION_DIM; i++) {
        pinMode(PWM_PINS[i], OUTPUT);
        pinMode(DIR_PINS[i], OUTPUT);
        analogWrite(PWM_PINS[i], 0);
    }
    pinMode(ESTOP_PIN, INPUT_PULLUP);
    Serial.begin(KDP_BAUD);

    memset(&cfg, 0, sizeof cfg);
    cfg.state_dim = STATE_DIM;
    cfg.action_dim = ACTION_DIM;
    for (i = 0; i < ACTION_DIM; i++) {
        cfg.action_min[i] = -ACTION_LIMIT;
        cfg.action_max[i] = ACTION_LIMIT;
    }
    cfg.max_valid_for_ms = MAX_VALID_FOR_MS;
    cfg.state_period_us = STATE_PERIOD_US;
    cfg.boot_id = make_boot_id();
    cfg.fw_version = FW_VERSION;
    cfg.fw_signature = FW_SIGNATURE;
    cfg.fw_name = FW_NAME;
    cfg.write = serial_write;
    cfg.write_ctx = NULL;
    kdp_ctrl_init(&ctl, &cfg);
    kdp_ctrl_boot(&ctl, micros(), cause);
    next_state_us = micros();
#ifdef __AVR__
    wdt_enable(WDTO_120MS); /* hardware watchdog: a hung loop() resets the MCU (outputs off) */
#endif
}

void loop() {
    uint32_t now = micros();
    int budget = 64; /* bytes per pass, so a flood cannot starve the watchdog check */
    while (budget-- > 0 && Serial.available() > 0) {
        kdp_ctrl_rx_byte(&ctl, (uint8_t)Serial.read(), now);
    }
    now = micros();
    kdp_ctrl_poll(&ctl, now);
    if (!ctl.estop && digitalRead(ESTOP_PIN) == LOW) {
        kdp_ctrl_estop(&ctl, now, KDP_FAULT_NONE, "e-stop button");
    }
    apply_outputs(ctl.outputs); /* all zero unless an ACTION is active */

    if ((int32_t)(now - next_state_us) >= 0) {
        float state[STATE_DIM];
        uint16_t flags = 0;
        read_sensors(state, &flags);
        sending_state = true;
        kdp_ctrl_send_state(&ctl, now, state, flags);
        sending_state = false;
        next_state_us += STATE_PERIOD_US;
        if ((int32_t)(now - next_state_us) > (int32_t)STATE_PERIOD_US) next_state_us = now + STATE_PERIOD_US;
    }
#ifdef __AVR__
    wdt_reset();
#endif
}
