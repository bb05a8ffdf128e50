"""The enrolment kiosk: session, packet building, submission to the central registry."""
