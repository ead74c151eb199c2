package grafana

// The parts of Grafana's dashboard JSON model that the dashboard uses.

type dashboard struct {
	UID           string      `json:"uid"`
	Title         string      `json:"title"`
	Description   string      `json:"description"`
	Tags          []string    `json:"tags"`
	SchemaVersion int         `json:"schemaVersion"`
	Editable      bool        `json:"editable"`
	GraphTooltip  int         `json:"graphTooltip"`
	Refresh       string      `json:"refresh"`
	Time          timeRange   `json:"time"`
	Templating    templating  `json:"templating"`
	Panels        []panelJSON `json:"panels"`
}

type timeRange struct {
	From string `json:"from"`
	To   string `json:"to"`
}

type templating struct {
	List []variable `json:"list"`
}

type variable struct {
	Name       string           `json:"name"`
	Label      string           `json:"label"`
	Type       string           `json:"type"`
	Datasource *datasource      `json:"datasource,omitempty"`
	Query      any              `json:"query"`
	Definition string           `json:"definition,omitempty"`
	Refresh    int              `json:"refresh,omitempty"`
	Sort       int              `json:"sort,omitempty"`
	Current    map[string]any   `json:"current,omitempty"`
	Options    []map[string]any `json:"options,omitempty"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type gridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

// panel is what the dashboard says of a panel; panelJSON is Grafana's form of it.
type panel struct {
	Title, Type, Unit string
	Min, Max          *float64
	Targets           []target
}

type target struct {
	Expr   string
	Legend string
}

type panelJSON struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	GridPos     gridPos        `json:"gridPos"`
	Datasource  *datasource    `json:"datasource,omitempty"`
	FieldConfig *fieldConfig   `json:"fieldConfig,omitempty"`
	Targets     []targetJSON   `json:"targets,omitempty"`
	Collapsed   *bool          `json:"collapsed,omitempty"`
	Panels      []panelJSON    `json:"panels,omitempty"`
	Options     map[string]any `json:"options,omitempty"`
}

type fieldConfig struct {
	Defaults struct {
		Unit string   `json:"unit"`
		Min  *float64 `json:"min,omitempty"`
		Max  *float64 `json:"max,omitempty"`
	} `json:"defaults"`
	Overrides []any `json:"overrides"`
}

type targetJSON struct {
	RefID        string      `json:"refId"`
	Datasource   *datasource `json:"datasource"`
	Expr         string      `json:"expr"`
	LegendFormat string      `json:"legendFormat"`
	Range        bool        `json:"range"`
}

// grid lays panels out three to a row of Grafana's 24 columns, rows of panels under row headers.
type grid struct {
	id, x, y int
}

const panelWidth, panelHeight = 8, 8

func (g *grid) row(title string) panelJSON {
	if g.x != 0 {
		g.x, g.y = 0, g.y+panelHeight
	}
	g.id++
	p := panelJSON{ID: g.id, Type: "row", Title: title, GridPos: gridPos{H: 1, W: 24, X: 0, Y: g.y}, Collapsed: new(bool)}
	g.y++
	return p
}

func (g *grid) panel(p panel) panelJSON {
	g.id++
	j := panelJSON{ID: g.id, Type: p.Type, Title: p.Title, GridPos: gridPos{H: panelHeight, W: panelWidth, X: g.x, Y: g.y},
		Datasource: ds(), FieldConfig: &fieldConfig{Overrides: []any{}},
		Options: map[string]any{"legend": map[string]any{"displayMode": "list", "placement": "bottom", "showLegend": true},
			"tooltip": map[string]any{"mode": "multi", "sort": "desc"}}}
	j.FieldConfig.Defaults.Unit, j.FieldConfig.Defaults.Min, j.FieldConfig.Defaults.Max = p.Unit, p.Min, p.Max
	for i, t := range p.Targets {
		j.Targets = append(j.Targets, targetJSON{RefID: string(rune('A' + i)), Datasource: ds(), Expr: t.Expr, LegendFormat: t.Legend, Range: true})
	}
	if g.x += panelWidth; g.x >= 24 {
		g.x, g.y = 0, g.y+panelHeight
	}
	return j
}

func (d *dashboard) add(p panelJSON) { d.Panels = append(d.Panels, p) }
