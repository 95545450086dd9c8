package function

import (
	"encoding/json"
	"net/http"
)

// Reading is one row of the building's sensor feed.
type Reading struct {
	Sensor    string  `json:"sensor"`
	Variable  string  `json:"variable"`
	Units     string  `json:"units"`
	Timestamp string  `json:"timestamp"`
	Value     float64 `json:"value"`
	Location  string  `json:"location"`
}

// Temperature is the value of a temperature row.
type Temperature struct {
	Value float64 `json:"value"`
}

// Handle keeps a row's value.
func Handle(w http.ResponseWriter, r *http.Request) {
	defer r.Body.Close()
	var reading Reading
	if err := json.NewDecoder(r.Body).Decode(&reading); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(Temperature{Value: reading.Value})
}
