package localcloud

import (
	"cmp"
	"net/http"
	"strconv"
	"time"
)

// The catalog is the fixed part of the fake's world: where servers can live,
// what sizes they come in, what they cost and what they boot from. It mirrors
// a small slice of Hetzner's real offer so configurations written for the
// real API (cx23 in fsn1, a snapshot picked by label) work unchanged.

const vatPercent = 19

type catalogServerType struct {
	id           int64
	name         string
	description  string
	category     string
	cores        int
	memory, disk float64
	arch         string
	cpuType      string
	monthlyNet   float64 // EUR per month, without VAT
	deprecated   bool    // in every location; see deprecation
}

var serverTypes = []catalogServerType{
	{id: 104, name: "cx23", description: "CX23", category: "cost_optimized", cores: 2, memory: 4, disk: 40, arch: "x86", cpuType: "shared", monthlyNet: 3.49},
	{id: 105, name: "cx33", description: "CX33", category: "cost_optimized", cores: 4, memory: 8, disk: 80, arch: "x86", cpuType: "shared", monthlyNet: 5.49},
	{id: 106, name: "cx43", description: "CX43", category: "cost_optimized", cores: 8, memory: 16, disk: 160, arch: "x86", cpuType: "shared", monthlyNet: 9.49},
	{id: 108, name: "cpx22", description: "CPX22", category: "regular_purpose", cores: 2, memory: 4, disk: 80, arch: "x86", cpuType: "shared", monthlyNet: 5.99},
	{id: 45, name: "cax11", description: "CAX11", category: "cost_optimized", cores: 2, memory: 4, disk: 40, arch: "arm", cpuType: "shared", monthlyNet: 3.79},
	{id: 22, name: "cx22", description: "CX22", category: "cost_optimized", cores: 2, memory: 4, disk: 40, arch: "x86", cpuType: "shared", monthlyNet: 3.79, deprecated: true},
}

// Hetzner announced the deprecation of the CX Gen2 types (cx22 and
// family) on 2025-10-16 (docs.hetzner.cloud/changelog). The fake keeps
// selling cx22 until the first day of the month after next by its own
// clock, so a deprecated type still on sale is always there to test.
var deprecationAnnounced = time.Date(2025, 10, 16, 0, 0, 0, 0, time.UTC)

type deprecationJSON struct {
	Announced        time.Time `json:"announced"`
	UnavailableAfter time.Time `json:"unavailable_after"`
}

// deprecation is a deprecated type's deprecation at now; nil otherwise.
func (t catalogServerType) deprecation(now time.Time) *deprecationJSON {
	if !t.deprecated {
		return nil
	}
	now = now.UTC()
	return &deprecationJSON{
		Announced:        deprecationAnnounced,
		UnavailableAfter: time.Date(now.Year(), now.Month()+2, 1, 0, 0, 0, 0, time.UTC),
	}
}

type catalogLocation struct {
	loc locationJSON
}

var locations = []catalogLocation{
	{loc: locationJSON{ID: 1, Name: "fsn1", Description: "Falkenstein DC Park 1", Country: "DE", City: "Falkenstein", Latitude: 50.47612, Longitude: 12.370071, NetworkZone: "eu-central"}},
	{loc: locationJSON{ID: 2, Name: "nbg1", Description: "Nuremberg DC Park 1", Country: "DE", City: "Nuremberg", Latitude: 49.452102, Longitude: 11.076665, NetworkZone: "eu-central"}},
	{loc: locationJSON{ID: 3, Name: "hel1", Description: "Helsinki DC Park 1", Country: "FI", City: "Helsinki", Latitude: 60.169855, Longitude: 24.938379, NetworkZone: "eu-central"}},
}

type catalogImage struct {
	id          int64
	typ         string // system or snapshot
	name        string // empty for snapshots, as on Hetzner
	description string
	osFlavor    string
	osVersion   string
	arch        string
	diskSize    float64
	labels      map[string]string
}

// LocalImageLabel is the label carried by the local cloud's own machine
// image, so a gateway configured with the production image selector
// ("cc-gateway=image") finds an image here too.
const LocalImageLabel = "cc-gateway=image"

var images = []catalogImage{
	{id: 1, typ: "system", name: "debian-12", description: "Debian 12", osFlavor: "debian", osVersion: "12", arch: "x86", diskSize: 5},
	{id: 2, typ: "system", name: "debian-13", description: "Debian 13", osFlavor: "debian", osVersion: "13", arch: "x86", diskSize: 5},
	{id: 3, typ: "system", name: "ubuntu-24.04", description: "Ubuntu 24.04", osFlavor: "ubuntu", osVersion: "24.04", arch: "x86", diskSize: 5},
	{id: 100, typ: "snapshot", description: "cc-gateway local machine", osFlavor: "unknown", arch: "x86", diskSize: 20, labels: map[string]string{"cc-gateway": "image"}},
}

// catalogEpoch is when the catalog's images claim to have been created.
var catalogEpoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func decimal(v float64) string { return strconv.FormatFloat(v, 'f', 10, 64) }

func priceOf(net float64) price {
	return price{Net: decimal(net), Gross: decimal(net * (100 + vatPercent) / 100)}
}

func (t catalogServerType) prices() []serverTypePrice {
	var out []serverTypePrice
	for _, l := range locations {
		out = append(out, serverTypePrice{
			Location:          l.loc.Name,
			PriceHourly:       priceOf(t.monthlyNet / 730),
			PriceMonthly:      priceOf(t.monthlyNet),
			IncludedTraffic:   20 << 40,
			PricePerTBTraffic: priceOf(1),
		})
	}
	return out
}

// Primary IPs are billed apart from the server, per location and IP type;
// every server here has a primary IPv4 address. Floating IPs are listed for
// the same types, as Hetzner does: hcloud-go (v2.52) sizes its list of
// primary IP prices by the floating IP list and fails on more.
const (
	primaryIPv4MonthlyNet  = 0.50
	floatingIPv4MonthlyNet = 3
)

type ipPricing struct {
	Type   string    `json:"type"`
	Prices []ipPrice `json:"prices"`
}

type ipPrice struct {
	Location     string `json:"location"`
	PriceHourly  *price `json:"price_hourly,omitempty"` // primary IPs only
	PriceMonthly price  `json:"price_monthly"`
}

func primaryIPPricing() []ipPricing {
	var ipv4 []ipPrice
	for _, l := range locations {
		hourly := priceOf(primaryIPv4MonthlyNet / 730)
		ipv4 = append(ipv4, ipPrice{Location: l.loc.Name, PriceHourly: &hourly, PriceMonthly: priceOf(primaryIPv4MonthlyNet)})
	}
	return []ipPricing{{Type: "ipv4", Prices: ipv4}}
}

func floatingIPPricing() []ipPricing {
	var ipv4 []ipPrice
	for _, l := range locations {
		ipv4 = append(ipv4, ipPrice{Location: l.loc.Name, PriceMonthly: priceOf(floatingIPv4MonthlyNet)})
	}
	return []ipPricing{{Type: "ipv4", Prices: ipv4}}
}

// serverTypeView is the type as the API shows it now: deprecated or not,
// and available (not sold out, see capacity) in each location or not.
func (c *Cloud) serverTypeView(t catalogServerType) serverTypeJSON {
	deprecated := t.deprecated
	j := serverTypeJSON{
		ID: t.id, Name: t.name, Description: t.description, Category: t.category,
		Cores: t.cores, Memory: t.memory, Disk: t.disk, Deprecated: &deprecated,
		Prices: t.prices(), StorageType: "local", CPUType: t.cpuType, Architecture: t.arch,
	}
	// A nil *deprecationJSON encodes as null: not deprecated.
	d := t.deprecation(c.now())
	j.Deprecation = d
	sold, _ := c.opts.Faults.(capacity)
	for _, l := range locations {
		available := sold == nil || !sold.SoldOut(t.name, l.loc.Name)
		j.Locations = append(j.Locations, serverTypeLocation{
			ID: l.loc.ID, Name: l.loc.Name, Deprecation: d,
			Available: available, Recommended: available && !t.deprecated,
		})
	}
	return j
}

func (im catalogImage) json() imageJSON {
	j := imageJSON{
		ID: im.id, Type: im.typ, Status: "available", Description: im.description,
		DiskSize: im.diskSize, Created: catalogEpoch, OSFlavor: im.osFlavor,
		Protection: protectionJSON{}, Labels: labelsView(im.labels), Architecture: im.arch,
	}
	if im.name != "" {
		name := im.name
		j.Name = &name
	}
	if im.osVersion != "" {
		v := im.osVersion
		j.OSVersion = &v
	}
	if im.typ == "snapshot" {
		size := im.diskSize / 4
		j.ImageSize = &size
	}
	return j
}

// findServerType, findLocation and findImage accept an id or a name, as
// the API does.
func findServerType(idOrName string) (catalogServerType, bool) {
	for _, t := range serverTypes {
		if t.name == idOrName || strconv.FormatInt(t.id, 10) == idOrName {
			return t, true
		}
	}
	return catalogServerType{}, false
}

func serverTypeNames() []string {
	var out []string
	for _, t := range serverTypes {
		out = append(out, t.name)
	}
	return out
}

func locationNames() []string {
	var out []string
	for _, l := range locations {
		out = append(out, l.loc.Name)
	}
	return out
}

func findLocation(idOrName string) (catalogLocation, bool) {
	for _, l := range locations {
		if l.loc.Name == idOrName || strconv.FormatInt(l.loc.ID, 10) == idOrName {
			return l, true
		}
	}
	return catalogLocation{}, false
}

func findImage(idOrName string) (catalogImage, bool) {
	for _, im := range images {
		if (im.name != "" && im.name == idOrName) || strconv.FormatInt(im.id, 10) == idOrName {
			return im, true
		}
	}
	return catalogImage{}, false
}

type pricingJSON struct {
	Currency          string        `json:"currency"`
	VATRate           string        `json:"vat_rate"`
	Image             perGBMonth    `json:"image"`
	FloatingIP        monthly       `json:"floating_ip"`
	FloatingIPs       []ipPricing   `json:"floating_ips"`
	PrimaryIPs        []ipPricing   `json:"primary_ips"`
	ServerBackup      backupPricing `json:"server_backup"`
	ServerTypes       []typePricing `json:"server_types"`
	LoadBalancerTypes []typePricing `json:"load_balancer_types"`
	Volume            perGBMonth    `json:"volume"`
}

type perGBMonth struct {
	PricePerGBMonth price `json:"price_per_gb_month"`
}

type monthly struct {
	PriceMonthly price `json:"price_monthly"`
}

type backupPricing struct {
	Percentage string `json:"percentage"`
}

type typePricing struct {
	ID     int64             `json:"id"`
	Name   string            `json:"name"`
	Prices []serverTypePrice `json:"prices"`
}

func pricing() pricingJSON {
	p := pricingJSON{
		Currency:          "EUR",
		VATRate:           decimal(vatPercent),
		Image:             perGBMonth{PricePerGBMonth: priceOf(0.011)},
		FloatingIP:        monthly{PriceMonthly: priceOf(floatingIPv4MonthlyNet)},
		FloatingIPs:       floatingIPPricing(),
		PrimaryIPs:        primaryIPPricing(),
		ServerBackup:      backupPricing{Percentage: decimal(20)},
		LoadBalancerTypes: []typePricing{},
		Volume:            perGBMonth{PricePerGBMonth: priceOf(0.044)},
	}
	for _, t := range serverTypes {
		p.ServerTypes = append(p.ServerTypes, typePricing{ID: t.id, Name: t.name, Prices: t.prices()})
	}
	return p
}

func (c *Cloud) listServerTypes(w http.ResponseWriter, r *http.Request) {
	var list []serverTypeJSON
	for _, t := range serverTypes {
		if name := r.URL.Query().Get("name"); name == "" || name == t.name {
			list = append(list, c.serverTypeView(t))
		}
	}
	writePage(w, r, "server_types", list)
}

func (c *Cloud) getServerType(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	t, found := findServerType(strconv.FormatInt(id, 10))
	if !found {
		writeNotFound(w, "server_type", id)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		ServerType serverTypeJSON `json:"server_type"`
	}{c.serverTypeView(t)})
}

func listLocations(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var list []locationJSON
	for _, l := range locations {
		if name := q.Get("name"); name == "" || name == l.loc.Name {
			list = append(list, l.loc)
		}
	}
	writeList(w, r, "locations", list, map[string]func(a, b locationJSON) int{
		"id":   func(a, b locationJSON) int { return cmp.Compare(a.ID, b.ID) },
		"name": func(a, b locationJSON) int { return cmp.Compare(a.Name, b.Name) },
	})
}

func getLocation(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id")
	if !ok {
		return
	}
	l, found := findLocation(strconv.FormatInt(id, 10))
	if !found {
		writeNotFound(w, "location", id)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Location locationJSON `json:"location"`
	}{l.loc})
}

func getPricing(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Pricing pricingJSON `json:"pricing"`
	}{pricing()})
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// orEmpty makes an empty page encode as [] rather than null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
