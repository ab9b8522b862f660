package tcp

// SendOnePerSegment makes output send every segment through sendNewData,
// as before sendPacketRest, or puts sendPacketRest back.
func SendOnePerSegment(p *Protocol, on bool) { p.onePerSegment = on }
