// Package xds is the control plane's configuration push: it compiles Services, EndpointSlices,
// Pods, ExternalWorkloads and TrafficSplits into xDS resources (see internal/xdsnames for their
// shape) and serves them over ADS, state-of-the-world and delta, to proxies that prove who they are
// with their workload certificates. Every control-plane replica runs it.
package xds
