#include "transport/net.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

/* Ports come from below the ephemeral range and are bindable on loopback. */
Test(port, picked_ports_bind_and_avoid_the_ephemeral_range) {
  int lo = 32768;
  FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
  if (f) {
    int a, b;
    if (fscanf(f, "%d %d", &a, &b) == 2 && a > 2048) lo = a;
    fclose(f);
  }
  for (int i = 0; i < 20; i++) {
    int p = tp_pick_local_port();
    cr_assert(p > 0 && p < lo, "port %d", p);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0, "port %d does not bind", p);
    close(fd);
  }
}
