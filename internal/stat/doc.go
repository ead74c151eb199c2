// Package stat is what `skein stat` shows: rows of golden metrics per service, workload, namespace
// or TrafficSplit backend, from a Source (the MeshStatus objects the control plane writes, or
// PromQL over Prometheus), printed as a table or JSON. Every source fills the same Row, so the
// output reads the same whichever answered.
package stat
