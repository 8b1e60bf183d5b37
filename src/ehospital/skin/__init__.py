"""The online skin hospital: acne photo analysis, reports and follow-up."""
