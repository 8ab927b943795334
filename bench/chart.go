package bench

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
)

// WriteChart draws every figure that has a target as a bar of value/target (1 = on target;
// the scale runs to 3×, longer bars are cut and marked), green when the target is met.
func (r *Results) WriteChart(path string) error {
	var figs []Figure
	for _, f := range r.Figures {
		if f.Target != 0 && f.Skipped == "" && !math.IsNaN(f.Value) {
			figs = append(figs, f)
		}
	}
	const (
		scale   = 2
		rowH    = 24
		labelW  = 44 * glyphW * scale
		barW    = 600
		valueW  = 26 * glyphW * scale
		top     = 60
		maxRate = 3.0
	)
	w, h := labelW+barW+valueW+30, top+rowH*len(figs)+40
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	ink := color.RGBA{0x20, 0x20, 0x20, 0xff}
	title := fmt.Sprintf("CAMAGENT BENCH %s %s - VALUE / TARGET", r.Revision, r.Date.Format("2006-01-02 15:04Z"))
	if r.Quick {
		title += " (QUICK)"
	}
	drawText(img, 10, 10, scale, title, ink)
	drawText(img, 10, 32, scale, fmt.Sprintf("%d CORES, %s, LOAD %s", r.Machine.Cores, r.Machine.GoVersion, r.Machine.LoadAvg), ink)
	x0 := labelW + 10
	unit := float64(barW) / maxRate
	green, red := color.RGBA{0x3c, 0xa0, 0x50, 0xff}, color.RGBA{0xd0, 0x40, 0x30, 0xff}
	for i, f := range figs {
		y := top + i*rowH
		drawText(img, 10, y+5, scale, trimLabel(f.ID, 43), ink)
		ratio := f.Value / f.Target
		if f.Better == "higher" && f.Value != 0 {
			ratio = f.Target / f.Value // still: shorter is better
		} else if f.Better == "higher" {
			ratio = maxRate
		}
		c := green
		if !f.Met() {
			c = red
		}
		n := int(math.Min(ratio, maxRate) * unit)
		draw.Draw(img, image.Rect(x0, y+3, x0+max(n, 1), y+rowH-3), image.NewUniform(c), image.Point{}, draw.Src)
		label := num(f.Value) + " " + f.Unit
		if ratio > maxRate {
			label = "> 3x " + label
		}
		drawText(img, x0+barW+10, y+5, scale, label, ink)
	}
	// the target line and the 2x, 3x marks
	for k := 1; k <= 3; k++ {
		x := x0 + int(float64(k)*unit)
		col := color.RGBA{0x90, 0x90, 0x90, 0xff}
		if k == 1 {
			col = ink
		}
		for y := top - 4; y < top+rowH*len(figs); y++ {
			img.Set(x, y, col)
		}
		drawText(img, x-6, top+rowH*len(figs)+6, scale, fmt.Sprintf("%dx", k), ink)
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(out, img); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func trimLabel(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
