package localcloud

import "time"

// The types below are the fake's half of the Hetzner Cloud API wire format.
// They are written from the API's published description (and checked against
// it in tests), not borrowed from the client library, so the fake cannot
// silently share a mistake with hcloud-go.

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details any    `json:"details"`
}

type errorBody struct {
	Error apiError `json:"error"`
}

type pagination struct {
	Page         int  `json:"page"`
	PerPage      int  `json:"per_page"`
	PreviousPage *int `json:"previous_page"`
	NextPage     *int `json:"next_page"`
	LastPage     *int `json:"last_page"`
	TotalEntries *int `json:"total_entries"`
}

type meta struct {
	Pagination pagination `json:"pagination"`
}

type actionResource struct {
	ID   int64  `json:"id"`
	Type string `json:"type"`
}

type actionErrorJSON struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type actionJSON struct {
	ID        int64            `json:"id"`
	Command   string           `json:"command"`
	Status    string           `json:"status"`
	Progress  int              `json:"progress"`
	Started   time.Time        `json:"started"`
	Finished  *time.Time       `json:"finished"`
	Resources []actionResource `json:"resources"`
	Error     *actionErrorJSON `json:"error"`
}

type price struct {
	Net   string `json:"net"`
	Gross string `json:"gross"`
}

type serverTypePrice struct {
	Location          string `json:"location"`
	PriceHourly       price  `json:"price_hourly"`
	PriceMonthly      price  `json:"price_monthly"`
	IncludedTraffic   int64  `json:"included_traffic"`
	PricePerTBTraffic price  `json:"price_per_tb_traffic"`
}

type serverTypeLocation struct {
	ID          int64  `json:"id"`
	Name        string `json:"name"`
	Deprecation any    `json:"deprecation"`
	// Hetzner added these on 2026-04-01 (docs.hetzner.cloud/changelog,
	// hcloud-go v2.38), after the stored API description was taken.
	Available   bool `json:"available"`
	Recommended bool `json:"recommended"`
}

type serverTypeJSON struct {
	ID           int64                `json:"id"`
	Name         string               `json:"name"`
	Description  string               `json:"description"`
	Category     string               `json:"category"`
	Cores        int                  `json:"cores"`
	Memory       float64              `json:"memory"`
	Disk         float64              `json:"disk"`
	Deprecated   *bool                `json:"deprecated"`
	Deprecation  any                  `json:"deprecation"`
	Prices       []serverTypePrice    `json:"prices"`
	StorageType  string               `json:"storage_type"`
	CPUType      string               `json:"cpu_type"`
	Architecture string               `json:"architecture"`
	Locations    []serverTypeLocation `json:"locations"`
}

type locationJSON struct {
	ID          int64   `json:"id"`
	Name        string  `json:"name"`
	Description string  `json:"description"`
	Country     string  `json:"country"`
	City        string  `json:"city"`
	Latitude    float64 `json:"latitude"`
	Longitude   float64 `json:"longitude"`
	NetworkZone string  `json:"network_zone"`
}

type protectionJSON struct {
	Delete bool `json:"delete"`
}

type createdFromJSON struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

type imageJSON struct {
	ID           int64             `json:"id"`
	Type         string            `json:"type"`
	Status       string            `json:"status"`
	Name         *string           `json:"name"`
	Description  string            `json:"description"`
	ImageSize    *float64          `json:"image_size"`
	DiskSize     float64           `json:"disk_size"`
	Created      time.Time         `json:"created"`
	CreatedFrom  any               `json:"created_from"`
	BoundTo      *int64            `json:"bound_to"`
	OSFlavor     string            `json:"os_flavor"`
	OSVersion    *string           `json:"os_version"`
	RapidDeploy  bool              `json:"rapid_deploy"`
	Protection   protectionJSON    `json:"protection"`
	Deprecated   *time.Time        `json:"deprecated"`
	Deleted      *time.Time        `json:"deleted"`
	Labels       map[string]string `json:"labels"`
	Architecture string            `json:"architecture"`
}

type ipv4JSON struct {
	ID      int64  `json:"id"`
	IP      string `json:"ip"`
	Blocked bool   `json:"blocked"`
	DNSPtr  string `json:"dns_ptr"`
}

type publicNetJSON struct {
	IPv4        *ipv4JSON            `json:"ipv4"`
	IPv6        any                  `json:"ipv6"`
	FloatingIPs []int64              `json:"floating_ips"`
	Firewalls   []serverFirewallJSON `json:"firewalls"`
}

type serverProtectionJSON struct {
	Delete  bool `json:"delete"`
	Rebuild bool `json:"rebuild"`
}

type serverJSON struct {
	ID              int64                `json:"id"`
	Name            string               `json:"name"`
	Status          string               `json:"status"`
	Created         time.Time            `json:"created"`
	PublicNet       publicNetJSON        `json:"public_net"`
	PrivateNet      []any                `json:"private_net"`
	ServerType      serverTypeJSON       `json:"server_type"`
	Location        locationJSON         `json:"location"`
	Image           *imageJSON           `json:"image"`
	ISO             any                  `json:"iso"`
	RescueEnabled   bool                 `json:"rescue_enabled"`
	Locked          bool                 `json:"locked"`
	BackupWindow    *string              `json:"backup_window"`
	OutgoingTraffic *int64               `json:"outgoing_traffic"`
	IngoingTraffic  *int64               `json:"ingoing_traffic"`
	IncludedTraffic *int64               `json:"included_traffic"`
	Protection      serverProtectionJSON `json:"protection"`
	Labels          map[string]string    `json:"labels"`
	Volumes         []int64              `json:"volumes"`
	LoadBalancers   []int64              `json:"load_balancers"`
	PrimaryDiskSize int                  `json:"primary_disk_size"`
	PlacementGroup  any                  `json:"placement_group"`
}

type sshKeyJSON struct {
	ID          int64             `json:"id"`
	Name        string            `json:"name"`
	Fingerprint string            `json:"fingerprint"`
	PublicKey   string            `json:"public_key"`
	Labels      map[string]string `json:"labels"`
	Created     time.Time         `json:"created"`
}
