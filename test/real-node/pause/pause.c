/*
 * The pod sandbox's process for the real-node e2e (docs/e2e.md): holds the pod's namespaces until the
 * kubelet stops the sandbox. PID 1 of the pod, so it also reaps orphans. Built `gcc -Os -static` by
 * scripts/real-node-images.sh; no registry, so no upstream pause image.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  signal(SIGTERM, quit);
  signal(SIGINT, quit);
  signal(SIGCHLD, reap);
  for (;;) pause();
}
