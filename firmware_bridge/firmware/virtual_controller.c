/*
 * virtual_controller.c - the reference controller, running on the host on a pseudo-terminal.
 *
 * Opens a pty with posix_openpt(), prints "PTY /dev/pts/N" on stdout (one line) and serves
 * the kdp protocol on it (kdp_ctrl.c: HELLO, STATE stream, ACTION with limits, watchdog, STOP,
 * e-stop) until SIGINT/SIGTERM (or --duration). The plant is a double integrator per action
 * channel:  x' = v,  v' = gain * a - damping * v,  state = [x_0..x_{n-1}, v_0..v_{n-1}, 0...]
 * (n = action_dim; the first state_dim entries are reported), integrated with dt = 1/rate.
 *
 * Raw units (for calibration work): reported state = state_scale * x + state_offset, and a
 * received command c means a = (c - action_offset) / action_scale; HELLO's limits are the raw
 * images of [-limit, limit]. --latency-ms delays every received byte before it is processed.
 *
 *   virtual_controller [--rate HZ] [--state-dim N] [--action-dim M] [--gain G] [--damping D]
 *                      [--limit L] [--max-valid-ms MS] [--state-scale S[,S..]]
 *                      [--state-offset O[,O..]] [--action-scale S[,..]] [--action-offset O[,..]]
 *                      [--latency-ms MS] [--boot-id ID] [--link PATH] [--duration S]
 */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "kdp_ctrl.h"

#define VC_VERSION 0x000100u /* 0.1.0 */
#define VC_NAME "kdp-virtual-controller 0.1.0"
#define TX_CAP 65536u
#define RXQ_CAP 65536u

typedef struct {
    double rate_hz;
    int state_dim;
    int action_dim;
    double gain;
    double damping;
    double limit;
    int max_valid_ms;
    float state_scale[KDP_MAX_STATE_DIM];
    float state_offset[KDP_MAX_STATE_DIM];
    float action_scale[KDP_MAX_ACTION_DIM];
    float action_offset[KDP_MAX_ACTION_DIM];
    double latency_ms;
    unsigned long boot_id;
    const char *link_path;
    double duration_s;
} options_t;

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

/* ---- output queue (whole frames or nothing) ---------------------------- */
static uint8_t g_tx[TX_CAP];
static size_t g_tx_len = 0;
static unsigned long g_tx_dropped = 0;

static void tx_write(void *ctx, const uint8_t *data, size_t len) {
    (void)ctx;
    if (g_tx_len + len > TX_CAP) {
        g_tx_dropped++;
        return;
    }
    memcpy(g_tx + g_tx_len, data, len);
    g_tx_len += len;
}

static void tx_flush(int fd) {
    while (g_tx_len > 0) {
        ssize_t n = write(fd, g_tx, g_tx_len);
        if (n <= 0) return; /* EAGAIN: the host is not reading; retry later */
        memmove(g_tx, g_tx + n, g_tx_len - (size_t)n);
        g_tx_len -= (size_t)n;
    }
}

/* ---- delayed input (injected latency) -------------------------------------- */
static uint8_t g_rxq[RXQ_CAP];
static uint64_t g_rxq_due[RXQ_CAP];
static size_t g_rxq_head = 0, g_rxq_len = 0;

static uint64_t mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int parse_floats(const char *s, float *out, int max, const char *what) {
    int n = 0, i;
    char *end;
    while (*s && n < max) {
        out[n++] = strtof(s, &end);
        if (end == s) {
            fprintf(stderr, "error: bad number list for %s\n", what);
            exit(2);
        }
        s = (*end == ',') ? end + 1 : end;
    }
    for (i = n; i < max; i++) out[i] = out[n - 1];
    return n;
}

static void usage(void) {
    fprintf(stderr,
            "usage: virtual_controller [--rate HZ] [--state-dim N] [--action-dim M] [--gain G]\n"
            "  [--damping D] [--limit L] [--max-valid-ms MS] [--state-scale S[,..]] [--state-offset O[,..]]\n"
            "  [--action-scale S[,..]] [--action-offset O[,..]] [--latency-ms MS] [--boot-id ID]\n"
            "  [--link PATH] [--duration S]\n");
}

static void parse_args(int argc, char **argv, options_t *o) {
    int i;
    o->rate_hz = 50.0;
    o->state_dim = 4;
    o->action_dim = 2;
    o->gain = 1.0;
    o->damping = 0.0;
    o->limit = 1.0;
    o->max_valid_ms = 500;
    for (i = 0; i < (int)KDP_MAX_STATE_DIM; i++) {
        o->state_scale[i] = 1.0f;
        o->state_offset[i] = 0.0f;
    }
    for (i = 0; i < (int)KDP_MAX_ACTION_DIM; i++) {
        o->action_scale[i] = 1.0f;
        o->action_offset[i] = 0.0f;
    }
    o->latency_ms = 0.0;
    o->boot_id = 0;
    o->link_path = NULL;
    o->duration_s = 0.0;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = (i + 1 < argc) ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage();
            exit(0);
        }
        if (v == NULL) {
            usage();
            exit(2);
        }
        i++;
        if (strcmp(a, "--rate") == 0) o->rate_hz = atof(v);
        else if (strcmp(a, "--state-dim") == 0) o->state_dim = atoi(v);
        else if (strcmp(a, "--action-dim") == 0) o->action_dim = atoi(v);
        else if (strcmp(a, "--gain") == 0) o->gain = atof(v);
        else if (strcmp(a, "--damping") == 0) o->damping = atof(v);
        else if (strcmp(a, "--limit") == 0) o->limit = atof(v);
        else if (strcmp(a, "--max-valid-ms") == 0) o->max_valid_ms = atoi(v);
        else if (strcmp(a, "--state-scale") == 0) parse_floats(v, o->state_scale, KDP_MAX_STATE_DIM, a);
        else if (strcmp(a, "--state-offset") == 0) parse_floats(v, o->state_offset, KDP_MAX_STATE_DIM, a);
        else if (strcmp(a, "--action-scale") == 0) parse_floats(v, o->action_scale, KDP_MAX_ACTION_DIM, a);
        else if (strcmp(a, "--action-offset") == 0) parse_floats(v, o->action_offset, KDP_MAX_ACTION_DIM, a);
        else if (strcmp(a, "--latency-ms") == 0) o->latency_ms = atof(v);
        else if (strcmp(a, "--boot-id") == 0) o->boot_id = strtoul(v, NULL, 0);
        else if (strcmp(a, "--link") == 0) o->link_path = v;
        else if (strcmp(a, "--duration") == 0) o->duration_s = atof(v);
        else {
            fprintf(stderr, "error: unknown option %s\n", a);
            usage();
            exit(2);
        }
    }
    if (o->rate_hz <= 0.0 || o->rate_hz > 10000.0 || o->state_dim < 1 || o->state_dim > (int)KDP_MAX_STATE_DIM ||
        o->action_dim < 1 || o->action_dim > (int)KDP_MAX_ACTION_DIM || o->max_valid_ms < 1 ||
        o->max_valid_ms > 65535 || o->limit <= 0.0 || o->latency_ms < 0.0) {
        fprintf(stderr, "error: option out of range (rate 0..10000 Hz, state-dim 1..64, action-dim 1..16, "
                        "max-valid-ms 1..65535, limit > 0, latency-ms >= 0)\n");
        exit(2);
    }
    for (i = 0; i < o->action_dim; i++) {
        if (o->action_scale[i] == 0.0f) {
            fprintf(stderr, "error: --action-scale must be non-zero\n");
            exit(2);
        }
    }
}

static uint32_t fnv1a(const char *s, uint32_t h) {
    while (*s) {
        h ^= (uint8_t)*s++;
        h *= 16777619u;
    }
    return h;
}

static int open_pty(char *path, size_t cap, int *slave_out) {
    struct termios tio;
    const char *name;
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    int slave;
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
        perror("posix_openpt");
        return -1;
    }
    name = ptsname(master);
    if (name == NULL || strlen(name) + 1 > cap) {
        perror("ptsname");
        return -1;
    }
    strcpy(path, name);
    /* Keep our own slave fd open: the pty stays alive while no host is attached, and its
     * line discipline is put in raw mode before any byte is written. */
    slave = open(path, O_RDWR | O_NOCTTY);
    if (slave < 0) {
        perror("open slave");
        return -1;
    }
    if (tcgetattr(slave, &tio) == 0) {
        tio.c_iflag &= (tcflag_t) ~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON | IXOFF);
        tio.c_oflag &= (tcflag_t)~OPOST;
        tio.c_lflag &= (tcflag_t) ~(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
        tio.c_cflag &= (tcflag_t) ~(CSIZE | PARENB);
        tio.c_cflag |= CS8;
        tio.c_cc[VMIN] = 1;
        tio.c_cc[VTIME] = 0;
        tcsetattr(slave, TCSANOW, &tio);
    }
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    *slave_out = slave;
    return master;
}

int main(int argc, char **argv) {
    static options_t o;
    static kdp_ctrl_t ctl;
    kdp_ctrl_config_t cfg;
    char path[256], sigbuf[256];
    double pos[KDP_MAX_ACTION_DIM], vel[KDP_MAX_ACTION_DIM];
    float state[KDP_MAX_STATE_DIM];
    uint64_t t0, now, next_tick, period_us, latency_us, stop_at;
    double dt;
    int master, slave, i;
    struct sigaction sa;

    parse_args(argc, argv, &o);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    master = open_pty(path, sizeof path, &slave);
    if (master < 0) return 1;
    if (o.link_path != NULL) {
        unlink(o.link_path);
        if (symlink(path, o.link_path) != 0) {
            perror("symlink");
            return 1;
        }
    }

    period_us = (uint64_t)(1e6 / o.rate_hz + 0.5);
    if (period_us < 1) period_us = 1;
    dt = (double)period_us * 1e-6;
    latency_us = (uint64_t)(o.latency_ms * 1000.0 + 0.5);
    t0 = mono_us();
    if (o.boot_id == 0) o.boot_id = ((unsigned long)t0 * 2654435761ul) ^ ((unsigned long)getpid() << 8);
    o.boot_id &= 0xFFFFFFFFul;
    if (o.boot_id == 0) o.boot_id = 1;

    memset(&cfg, 0, sizeof cfg);
    cfg.state_dim = (uint8_t)o.state_dim;
    cfg.action_dim = (uint8_t)o.action_dim;
    for (i = 0; i < o.action_dim; i++) {
        float lo = (float)(o.action_scale[i] * -o.limit + o.action_offset[i]);
        float hi = (float)(o.action_scale[i] * o.limit + o.action_offset[i]);
        cfg.action_min[i] = lo < hi ? lo : hi;
        cfg.action_max[i] = lo < hi ? hi : lo;
    }
    cfg.max_valid_for_ms = (uint16_t)o.max_valid_ms;
    cfg.state_period_us = (uint32_t)period_us;
    cfg.boot_id = (uint32_t)o.boot_id;
    cfg.fw_version = VC_VERSION;
    snprintf(sigbuf, sizeof sigbuf, "%s sd=%d ad=%d gain=%g damping=%g limit=%g", VC_NAME, o.state_dim,
             o.action_dim, o.gain, o.damping, o.limit);
    cfg.fw_signature = fnv1a(sigbuf, 2166136261u);
    cfg.fw_name = VC_NAME;
    cfg.write = tx_write;
    cfg.write_ctx = NULL;
    kdp_ctrl_init(&ctl, &cfg);

    printf("PTY %s\n", path);
    fflush(stdout);

    for (i = 0; i < (int)KDP_MAX_ACTION_DIM; i++) pos[i] = vel[i] = 0.0;
    kdp_ctrl_boot(&ctl, 0, KDP_RESET_POWER_ON);
    next_tick = t0;
    stop_at = o.duration_s > 0.0 ? t0 + (uint64_t)(o.duration_s * 1e6) : 0;

    while (!g_stop) {
        struct pollfd pfd;
        uint64_t wake;
        int timeout_ms;
        uint32_t now32;

        now = mono_us();
        if (stop_at && now >= stop_at) break;
        wake = next_tick;
        if (g_rxq_len > 0 && g_rxq_due[g_rxq_head] < wake) wake = g_rxq_due[g_rxq_head];
        if (ctl.active) {
            uint64_t dl = now + (uint64_t)(int32_t)(ctl.deadline_us - (uint32_t)(now - t0));
            if (dl < wake) wake = dl;
        }
        timeout_ms = wake <= now ? 0 : (int)((wake - now + 999u) / 1000u);
        pfd.fd = master;
        pfd.events = (short)(POLLIN | (g_tx_len ? POLLOUT : 0));
        pfd.revents = 0;
        if (poll(&pfd, 1, timeout_ms) < 0 && errno != EINTR) {
            perror("poll");
            break;
        }
        now = mono_us();
        now32 = (uint32_t)(now - t0);
        if (pfd.revents & POLLIN) {
            uint8_t buf[4096];
            ssize_t n = read(master, buf, sizeof buf);
            ssize_t k;
            for (k = 0; k < n; k++) {
                if (latency_us == 0) {
                    kdp_ctrl_rx_byte(&ctl, buf[k], now32);
                } else if (g_rxq_len < RXQ_CAP) {
                    size_t idx = (g_rxq_head + g_rxq_len) % RXQ_CAP;
                    g_rxq[idx] = buf[k];
                    g_rxq_due[idx] = now + latency_us;
                    g_rxq_len++;
                }
            }
        }
        while (g_rxq_len > 0 && g_rxq_due[g_rxq_head] <= now) {
            kdp_ctrl_rx_byte(&ctl, g_rxq[g_rxq_head], now32);
            g_rxq_head = (g_rxq_head + 1) % RXQ_CAP;
            g_rxq_len--;
        }
        kdp_ctrl_poll(&ctl, now32);
        if (now >= next_tick) {
            for (i = 0; i < o.action_dim; i++) {
                double a = ctl.active ? ((double)ctl.outputs[i] - o.action_offset[i]) / o.action_scale[i] : 0.0;
                vel[i] += (o.gain * a - o.damping * vel[i]) * dt;
                pos[i] += vel[i] * dt;
            }
            for (i = 0; i < o.state_dim; i++) {
                double x = 0.0;
                if (i < o.action_dim) x = pos[i];
                else if (i < 2 * o.action_dim) x = vel[i - o.action_dim];
                state[i] = (float)(o.state_scale[i] * x + o.state_offset[i]);
            }
            kdp_ctrl_send_state(&ctl, now32, state, 0);
            next_tick += period_us;
            if (next_tick + period_us < now) next_tick = now + period_us; /* fell behind: skip */
        }
        tx_flush(master);
    }

    fprintf(stderr,
            "stats tx_frames=%lu tx_dropped=%lu actions_accepted=%lu actions_rejected=%lu watchdog_trips=%lu "
            "stops=%lu hellos=%lu rx_ok=%lu rx_crc=%lu rx_malformed=%lu rx_oversize=%lu\n",
            (unsigned long)ctl.stats.tx_frames, g_tx_dropped, (unsigned long)ctl.stats.actions_accepted,
            (unsigned long)ctl.stats.actions_rejected, (unsigned long)ctl.stats.watchdog_trips,
            (unsigned long)ctl.stats.stops, (unsigned long)ctl.stats.hellos,
            (unsigned long)ctl.rx.stats.frames_ok, (unsigned long)ctl.rx.stats.crc_errors,
            (unsigned long)ctl.rx.stats.malformed, (unsigned long)ctl.rx.stats.oversize);
    if (o.link_path != NULL) unlink(o.link_path);
    close(slave);
    close(master);
    return 0;
}
