package xds

import (
	"fmt"
	"sync"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// resourceTypes are the types the control plane serves.
var resourceTypes = []string{resource.ListenerType, resource.RouteType, resource.ClusterType, resource.EndpointType}

// Cache holds every resource in one go-control-plane LinearCache per type. A LinearCache versions
// each resource on its own, so a change to one Service's endpoints goes only to the streams that
// watch that ClusterLoadAssignment, and a delta stream gets just the resources that changed.
type Cache struct {
	*cache.MuxCache
	linear map[string]*cache.LinearCache

	// OnUpdate, when set, hears how many resources of a type each Set changed and removed.
	OnUpdate func(typ string, changed, removed int)

	mu sync.Mutex
	// owned is what each source (a Service) put in the cache.
	owned map[string]Resources
	// names holds the cache's copy of each resource name (see Intern).
	names sync.Map
}

// NewCache makes an empty cache.
func NewCache() *Cache {
	c := &Cache{linear: map[string]*cache.LinearCache{}, owned: map[string]Resources{}}
	caches := map[string]cache.Cache{}
	for _, typ := range resourceTypes {
		c.linear[typ] = cache.NewLinearCache(typ)
		caches[typ] = c.linear[typ]
	}
	c.MuxCache = &cache.MuxCache{
		Classify:      func(r *cache.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *cache.DeltaRequest) string { return r.GetTypeUrl() },
		Caches:        caches,
	}
	return c
}

// Set replaces what source put in the cache with res. Resources equal to what is there are left
// alone, so that clients are sent only what changed.
func (c *Cache) Set(source string, res Resources) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	before := c.owned[source]
	for _, typ := range resourceTypes {
		changed := map[string]types.Resource{}
		for name, r := range res[typ] {
			if old, ok := before[typ][name]; !ok || !proto.Equal(old, r) {
				changed[name] = r
			}
		}
		var removed []string
		for name := range before[typ] {
			if _, still := res[typ][name]; !still {
				removed = append(removed, name)
			}
		}
		if len(changed) == 0 && len(removed) == 0 {
			continue
		}
		if err := c.linear[typ].UpdateResources(changed, removed); err != nil {
			return fmt.Errorf("updating %s resources of %s: %w", typ, source, err)
		}
		if c.OnUpdate != nil {
			c.OnUpdate(typ, len(changed), len(removed))
		}
	}
	for _, typ := range resourceTypes {
		for name := range before[typ] {
			if !holds(res, name) {
				c.names.Delete(name)
			}
		}
		for name := range res[typ] {
			c.names.LoadOrStore(name, name)
		}
	}
	if len(res) == 0 {
		delete(c.owned, source)
	} else {
		c.owned[source] = res
	}
	return nil
}

// holds tells whether res has a resource, of any type, named name.
func holds(res Resources, name string) bool {
	for _, byName := range res {
		if _, ok := byName[name]; ok {
			return true
		}
	}
	return false
}

// Intern is the cache's copy of a resource name, or name when the cache has no such resource.
// go-control-plane keeps, for each stream, the names it subscribed to as they were decoded from the
// request: a proxy that subscribes to every Service would otherwise hold its own copy of every name.
func (c *Cache) Intern(name string) string {
	if n, ok := c.names.Load(name); ok {
		return n.(string)
	}
	return name
}

// Get returns the resource of a type by name, or nil.
func (c *Cache) Get(typ, name string) types.Resource {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, res := range c.owned {
		if r, ok := res[typ][name]; ok {
			return r
		}
	}
	return nil
}

// Len is how many resources of a type the cache holds.
func (c *Cache) Len(typ string) int { return c.linear[typ].NumResources() }
