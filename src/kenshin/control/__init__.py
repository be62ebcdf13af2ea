"""The business side of remote control (issue 16): signing switching commands, and (to come)
approvals, the X1 budget and area campaigns. Never imported by the head-end."""
