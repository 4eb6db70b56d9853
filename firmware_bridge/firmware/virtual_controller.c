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
 *                      [--commands] [--stale-ms MS]
 *
 * Fault injection (--commands, for soak tests): one command per line on stdin, each answered by one
 * "OK ..." (or "ERR ...") line on stdout once it has taken effect:
 *   reboot          new boot id, seq from 0, plant and outputs reset (a controller reset)
 *   reopen MS       close the pty (the host sees the device vanish), open a new one MS ms later and
 *                   point --link at it (needs --link); answered when the new pty is up
 *   garbage N       N random bytes on the wire before the next frame
 *   bitflip N       one flipped bit in each of the next N STATE frames
 *   nan N / range N the next N STATEs carry NaN / 1e30 in their first value
 *   stall MS        no STATE for MS ms (the controller keeps running: watchdog, ACTIONs)
 *   stats           answers "STATS k=v ..." (the counters of the exit line, so far)
 * and prints "EVENT recovered cmd=C us=N" (first ACTION accepted after fault C ended, N us later) and
 * "EVENT watchdog_trip us_since_last_state=N us_since_fault=M" lines as they happen.
 * Every accepted ACTION is checked against the STATE it is tagged with: "late_accepted" counts those
 * whose STATE was sent more than --stale-ms (default: the ACTION's own valid-for time) earlier on this
 * program's clock, "stale_accepted" those of them for which this controller had meanwhile sent newer
 * STATEs covering that time (the host acted late, not a host-side delay of this process, which a real
 * microcontroller does not have), "invalid_accepted" those tagged with an injected NaN / out-of-range
 * STATE; "max_age_us" is the oldest.
 */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <math.h>
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
    int commands;
    double stale_ms;
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

static int g_flip_this_frame = 0; /* set around a STATE that must get one flipped bit */
static uint32_t g_rng = 0x12345678u;
static uint32_t rng_next(void) { /* xorshift32 */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 17;
    g_rng ^= g_rng << 5;
    return g_rng;
}

static void tx_write(void *ctx, const uint8_t *data, size_t len) {
    (void)ctx;
    if (g_tx_len + len > TX_CAP) {
        g_tx_dropped++;
        return;
    }
    memcpy(g_tx + g_tx_len, data, len);
    if (g_flip_this_frame && len > 1) { /* any byte but the delimiter */
        g_tx[g_tx_len + rng_next() % (len - 1)] ^= (uint8_t)(1u << (rng_next() % 8u));
        g_flip_this_frame = 0;
    }
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
            "  [--link PATH] [--duration S] [--commands] [--stale-ms MS]\n");
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
    o->commands = 0;
    o->stale_ms = 0.0;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = (i + 1 < argc) ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage();
            exit(0);
        }
        if (strcmp(a, "--commands") == 0) {
            o->commands = 1;
            continue;
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
        else if (strcmp(a, "--stale-ms") == 0) o->stale_ms = atof(v);
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

/* ---- fault injection and stale-action accounting (--commands) ------------------------------ */
#define RING 4096u
typedef struct {
    uint32_t seq;
    uint64_t sent_us;
    uint8_t bad;
    uint8_t used;
} sent_state_t;
static sent_state_t g_ring[RING];

typedef struct {
    unsigned long stale_accepted, late_accepted, invalid_accepted, unknown_state_accepted, max_age_us, reboots, reopens,
        garbage_bytes, bitflips, bad_states, stalls, states_stalled, recoveries;
    unsigned long acc_accepted, acc_rejected, acc_trips, acc_stops, acc_hellos, acc_rx_ok, acc_rx_crc,
        acc_rx_malformed, acc_rx_oversize, acc_tx; /* totals of earlier boots */
} fault_stats_t;
static fault_stats_t g_fs;

static int g_bitflip_left = 0, g_nan_left = 0, g_range_left = 0;
static uint64_t g_stall_until = 0;
static char g_pending[16] = "";      /* fault whose end waits for the next accepted ACTION */
static uint64_t g_fault_end_us = 0;  /* when it ended (0: still going) */
static uint64_t g_fault_start_us = 0;
static uint64_t g_last_state_us = 0, g_last_accept_us = 0;

static void reply(const char *fmt, unsigned long a, const char *s) {
    printf(fmt, a, s);
    fflush(stdout);
}

static void fault_begin(const char *name, uint64_t now, int ends_now) {
    strncpy(g_pending, name, sizeof g_pending - 1);
    g_pending[sizeof g_pending - 1] = '\0';
    g_fault_start_us = now;
    g_fault_end_us = ends_now ? now : 0;
}

static void stats_line(FILE *f, const char *head, const kdp_ctrl_t *ctl) {
    fprintf(f,
            "%s tx_frames=%lu tx_dropped=%lu actions_accepted=%lu actions_rejected=%lu watchdog_trips=%lu "
            "stops=%lu hellos=%lu rx_ok=%lu rx_crc=%lu rx_malformed=%lu rx_oversize=%lu stale_accepted=%lu late_accepted=%lu "
            "invalid_accepted=%lu unknown_state_accepted=%lu max_age_us=%lu reboots=%lu reopens=%lu "
            "garbage_bytes=%lu bitflips=%lu bad_states=%lu stalls=%lu states_stalled=%lu recoveries=%lu\n",
            head, g_fs.acc_tx + (unsigned long)ctl->stats.tx_frames, g_tx_dropped,
            g_fs.acc_accepted + (unsigned long)ctl->stats.actions_accepted,
            g_fs.acc_rejected + (unsigned long)ctl->stats.actions_rejected,
            g_fs.acc_trips + (unsigned long)ctl->stats.watchdog_trips, g_fs.acc_stops + (unsigned long)ctl->stats.stops,
            g_fs.acc_hellos + (unsigned long)ctl->stats.hellos, g_fs.acc_rx_ok + (unsigned long)ctl->rx.stats.frames_ok,
            g_fs.acc_rx_crc + (unsigned long)ctl->rx.stats.crc_errors,
            g_fs.acc_rx_malformed + (unsigned long)ctl->rx.stats.malformed,
            g_fs.acc_rx_oversize + (unsigned long)ctl->rx.stats.oversize, g_fs.stale_accepted, g_fs.late_accepted,
            g_fs.invalid_accepted,
            g_fs.unknown_state_accepted, g_fs.max_age_us, g_fs.reboots, g_fs.reopens, g_fs.garbage_bytes,
            g_fs.bitflips, g_fs.bad_states, g_fs.stalls, g_fs.states_stalled, g_fs.recoveries);
    fflush(f);
}

/* An ACTION was just accepted (valid for valid_us): how old is the STATE it answers, was that STATE valid? */
static void check_accepted(const kdp_ctrl_t *ctl, uint64_t now, uint64_t valid_us, double stale_ms,
                           uint64_t period_us) {
    const sent_state_t *e = &g_ring[ctl->last_accepted_state_seq % RING];
    g_last_accept_us = now;
    if (!e->used || e->seq != ctl->last_accepted_state_seq) {
        g_fs.unknown_state_accepted++; /* older than the ring (4096 STATEs): stale by any measure */
        g_fs.stale_accepted++;
    } else {
        uint64_t age = now - e->sent_us;
        uint64_t limit = stale_ms > 0.0 ? (uint64_t)(stale_ms * 1000.0) : valid_us;
        if (age > g_fs.max_age_us) g_fs.max_age_us = (unsigned long)age;
        if (e->bad) g_fs.invalid_accepted++;
        if (age > limit) {
            uint64_t newer = (uint64_t)(uint32_t)(ctl->last_state_seq - ctl->last_accepted_state_seq);
            g_fs.late_accepted++;
            if (newer * period_us >= limit) g_fs.stale_accepted++; /* newer STATEs covered the whole bound */
        }
    }
    if (g_pending[0] && g_fault_end_us && now >= g_fault_end_us) {
        printf("EVENT recovered cmd=%s us=%lu\n", g_pending, (unsigned long)(now - g_fault_end_us));
        fflush(stdout);
        g_fs.recoveries++;
        g_pending[0] = '\0';
    }
}

static uint64_t g_down_until = 0;
static int g_stdin_eof = 0;
static char g_cmd[128];
static size_t g_cmd_len = 0;

static void add_boot_totals(const kdp_ctrl_t *ctl) {
    g_fs.acc_accepted += ctl->stats.actions_accepted;
    g_fs.acc_rejected += ctl->stats.actions_rejected;
    g_fs.acc_trips += ctl->stats.watchdog_trips;
    g_fs.acc_stops += ctl->stats.stops;
    g_fs.acc_hellos += ctl->stats.hellos;
    g_fs.acc_rx_ok += ctl->rx.stats.frames_ok;
    g_fs.acc_rx_crc += ctl->rx.stats.crc_errors;
    g_fs.acc_rx_malformed += ctl->rx.stats.malformed;
    g_fs.acc_rx_oversize += ctl->rx.stats.oversize;
    g_fs.acc_tx += ctl->stats.tx_frames;
}

static void run_command(const char *line, kdp_ctrl_t *ctl, kdp_ctrl_config_t *cfg, int *master, int *slave,
                        char *path, size_t cap, const options_t *o, uint64_t now, uint32_t now32, double *pos,
                        double *vel) {
    char name[32] = "";
    long arg = 0;
    int i;
    (void)path;
    (void)cap;
    if (sscanf(line, "%31s %ld", name, &arg) < 1) return;
    if (strcmp(name, "stats") == 0) {
        stats_line(stdout, "STATS", ctl);
    } else if (strcmp(name, "reboot") == 0) {
        uint32_t id;
        add_boot_totals(ctl);
        do id = rng_next(); while (id == 0 || id == cfg->boot_id);
        cfg->boot_id = id;
        kdp_ctrl_init(ctl, cfg);
        memset(g_ring, 0, sizeof g_ring);
        for (i = 0; i < (int)KDP_MAX_ACTION_DIM; i++) pos[i] = vel[i] = 0.0;
        kdp_ctrl_boot(ctl, now32, KDP_RESET_SOFTWARE);
        g_fs.reboots++;
        fault_begin("reboot", now, 1);
        reply("OK reboot %lu %s\n", (unsigned long)id, "");
    } else if (strcmp(name, "reopen") == 0) {
        if (o->link_path == NULL || *master < 0) {
            reply("ERR reopen %lu %s\n", 0, "needs --link and an open pty");
            return;
        }
        add_boot_totals(ctl); /* the parser restarts with the new pty: move every counter into the totals */
        memset(&ctl->stats, 0, sizeof ctl->stats);
        close(*master);
        close(*slave);
        *master = *slave = -1;
        g_tx_len = 0;
        g_down_until = now + (uint64_t)(arg > 0 ? arg : 0) * 1000u + 1u;
        fault_begin("reopen", now, 0); /* ends (and is answered) when the new pty is up */
    } else if (strcmp(name, "garbage") == 0) {
        long k;
        for (k = 0; k < arg && g_tx_len < TX_CAP; k++) g_tx[g_tx_len++] = (uint8_t)rng_next();
        g_fs.garbage_bytes += (unsigned long)(arg > 0 ? arg : 0);
        fault_begin("garbage", now, 1);
        reply("OK garbage %lu %s\n", (unsigned long)arg, "");
    } else if (strcmp(name, "bitflip") == 0 || strcmp(name, "nan") == 0 || strcmp(name, "range") == 0) {
        if (arg < 1) arg = 1;
        if (name[0] == 'b') g_bitflip_left += (int)arg;
        else if (name[0] == 'n') g_nan_left += (int)arg;
        else g_range_left += (int)arg;
        fault_begin(name, now, 0); /* ends with its last damaged STATE */
        printf("OK %s %ld\n", name, arg);
        fflush(stdout);
    } else if (strcmp(name, "stall") == 0) {
        g_stall_until = now + (uint64_t)(arg > 0 ? arg : 1) * 1000u;
        g_fs.stalls++;
        fault_begin("stall", now, 0); /* ends with the first STATE after it */
        reply("OK stall %lu %s\n", (unsigned long)arg, "");
    } else {
        reply("ERR %lu unknown command %s\n", 0, name);
    }
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
    g_rng ^= (uint32_t)o.boot_id;
    if (o.commands) fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);

    while (!g_stop) {
        struct pollfd pfd[2];
        uint64_t wake;
        int timeout_ms, nfd = 1;
        uint32_t now32;

        now = mono_us();
        if (stop_at && now >= stop_at) break;
        wake = next_tick;
        if (g_rxq_len > 0 && g_rxq_due[g_rxq_head] < wake) wake = g_rxq_due[g_rxq_head];
        if (ctl.active) {
            uint64_t dl = now + (uint64_t)(int32_t)(ctl.deadline_us - (uint32_t)(now - t0));
            if (dl < wake) wake = dl;
        }
        if (g_down_until && g_down_until < wake) wake = g_down_until;
        timeout_ms = wake <= now ? 0 : (int)((wake - now + 999u) / 1000u);
        pfd[0].fd = master; /* -1 while the pty is down: poll ignores it */
        pfd[0].events = (short)(POLLIN | (g_tx_len ? POLLOUT : 0));
        pfd[0].revents = 0;
        pfd[1].fd = o.commands && !g_stdin_eof ? 0 : -1;
        pfd[1].events = POLLIN;
        pfd[1].revents = 0;
        nfd = 2;
        if (poll(pfd, (nfds_t)nfd, timeout_ms) < 0 && errno != EINTR) {
            perror("poll");
            break;
        }
        now = mono_us();
        now32 = (uint32_t)(now - t0);
        if (master >= 0 && (pfd[0].revents & POLLIN)) {
            uint8_t buf[4096];
            ssize_t n = read(master, buf, sizeof buf);
            ssize_t k;
            for (k = 0; k < n; k++) {
                if (latency_us == 0) {
                    uint32_t before = ctl.stats.actions_accepted;
                    kdp_ctrl_rx_byte(&ctl, buf[k], now32);
                    if (ctl.stats.actions_accepted != before)
                        check_accepted(&ctl, now, (uint64_t)(uint32_t)(ctl.deadline_us - now32), o.stale_ms, period_us);
                } else if (g_rxq_len < RXQ_CAP) {
                    size_t idx = (g_rxq_head + g_rxq_len) % RXQ_CAP;
                    g_rxq[idx] = buf[k];
                    g_rxq_due[idx] = now + latency_us;
                    g_rxq_len++;
                }
            }
        }
        while (g_rxq_len > 0 && g_rxq_due[g_rxq_head] <= now) {
            uint32_t before = ctl.stats.actions_accepted;
            kdp_ctrl_rx_byte(&ctl, g_rxq[g_rxq_head], now32);
            if (ctl.stats.actions_accepted != before)
                check_accepted(&ctl, now, (uint64_t)(uint32_t)(ctl.deadline_us - now32), o.stale_ms, period_us);
            g_rxq_head = (g_rxq_head + 1) % RXQ_CAP;
            g_rxq_len--;
        }
        if (pfd[1].fd >= 0 && (pfd[1].revents & (POLLIN | POLLHUP))) {
            char cbuf[256];
            ssize_t n = read(0, cbuf, sizeof cbuf);
            if (n <= 0 && !(n < 0 && errno == EAGAIN)) g_stdin_eof = 1;
            for (i = 0; i < (int)n; i++) {
                if (cbuf[i] == '\n' || g_cmd_len + 1 >= sizeof g_cmd) {
                    g_cmd[g_cmd_len] = '\0';
                    g_cmd_len = 0;
                    run_command(g_cmd, &ctl, &cfg, &master, &slave, path, sizeof path, &o, now, now32, pos, vel);
                } else {
                    g_cmd[g_cmd_len++] = cbuf[i];
                }
            }
        }
        if (g_down_until && now >= g_down_until) { /* the "unplugged" pty comes back under --link */
            master = open_pty(path, sizeof path, &slave);
            if (master < 0) return 1;
            unlink(o.link_path);
            if (symlink(path, o.link_path) != 0) {
                perror("symlink");
                return 1;
            }
            kdp_parser_init(&ctl.rx); /* parser stats restart: keep the totals */
            g_down_until = 0;
            g_fault_end_us = now;
            g_fs.reopens++;
            reply("OK reopen %lu %s\n", g_fs.reopens, path); /* "OK reopen <count> <new pty>" */
        }
        {
            uint32_t trips = ctl.stats.watchdog_trips;
            kdp_ctrl_poll(&ctl, now32);
            if (ctl.stats.watchdog_trips != trips && o.commands) {
                printf("EVENT watchdog_trip us_since_last_state=%lu us_since_last_accept=%lu us_since_fault=%ld\n",
                       (unsigned long)(now - g_last_state_us), (unsigned long)(now - g_last_accept_us),
                       g_pending[0] ? (long)(now - g_fault_start_us) : -1L);
                fflush(stdout);
            }
        }
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
            if (g_stall_until && now < g_stall_until) {
                g_fs.states_stalled++; /* STATE stream stalled: nothing sent this period */
            } else {
                uint8_t bad = 0;
                int last_fault_frame = 0;
                uint32_t before = ctl.last_state_seq;
                int had = ctl.have_state;
                if (g_stall_until) { /* the stall just ended */
                    g_stall_until = 0;
                    g_fault_end_us = now;
                }
                if (g_nan_left > 0) {
                    state[0] = (float)NAN;
                    bad = 1;
                    last_fault_frame = --g_nan_left == 0;
                } else if (g_range_left > 0) {
                    state[0] = 1e30f;
                    bad = 1;
                    last_fault_frame = --g_range_left == 0;
                }
                if (g_bitflip_left > 0) {
                    g_flip_this_frame = 1;
                    g_fs.bitflips++;
                    if (--g_bitflip_left == 0) last_fault_frame = 1;
                }
                g_fs.bad_states += bad;
                kdp_ctrl_send_state(&ctl, now32, state, 0);
                g_flip_this_frame = 0;
                if (!had || ctl.last_state_seq != before) {
                    sent_state_t *e = &g_ring[ctl.last_state_seq % RING];
                    e->seq = ctl.last_state_seq;
                    e->sent_us = now;
                    e->bad = bad;
                    e->used = 1;
                    g_last_state_us = now;
                }
                if (last_fault_frame) g_fault_end_us = now;
            }
            next_tick += period_us;
            if (next_tick + period_us < now) next_tick = now + period_us; /* fell behind: skip */
        }
        if (master >= 0) tx_flush(master);
        else g_tx_len = 0; /* unplugged: what the controller writes goes nowhere (as on a USB CDC port) */
    }

    stats_line(stderr, "stats", &ctl);
    if (o.link_path != NULL) unlink(o.link_path);
    if (slave >= 0) close(slave);
    if (master >= 0) close(master);
    return 0;
}
