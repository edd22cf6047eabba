/*
 * sdnotify.h — tells systemd about the daemon's state (Type=notify units):
 * READY=1 once serving, RELOADING=1 / READY=1 around a reload, STOPPING=1.
 * A no-op when NOTIFY_SOCKET is not set. Written against sd_notify(3)'s
 * documented datagram protocol, so libsystemd is not needed.
 */
#ifndef STRAIT_SDNOTIFY_H
#define STRAIT_SDNOTIFY_H

/* Sends state (e.g. "READY=1\nSTATUS=serving"); failures are logged at debug. */
void sdnotify_send(const char *state);

#endif
