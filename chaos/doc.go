// Package chaos holds the array's fault suites: simulator scenarios under
// failpoint fault matrices, and real-network suites that run nodes as
// containers (Docker Engine and Compose) and kill, freeze and cut them off
// under load. The checks are the invariants of DESIGN.md.
package chaos
