# shellcheck shell=bash
# Outbound e-mail through Amazon SES's SMTP interface, when the stack has a sender.
# After lib/common.sh. The SMTP credentials (an SES SMTP user name and password) are read
# from a Secrets Manager secret ({"username", "password"}: the one the stack makes,
# compile/email.py, or the user's EmailSmtpSecretArn), never passed in. Its ARN is the field
# smtp_secret_arn of the boot bundle parameter (instances.bundle_location; the user data has
# no room for it). Settings as GitLab documents them for Amazon SES: port 587 with STARTTLS, LOGIN
# (https://docs.gitlab.com/omnibus/settings/smtp/#amazon-ses); the endpoint is the stack
# region's (https://docs.aws.amazon.com/ses/latest/dg/smtp-connect.html).

SMTP_PORT=587

# smtp_secret_arn: the SMTP credentials' secret, from the parameter $BUNDLE_PARAMETER.
smtp_secret_arn() {
  aws_call ssm get-parameter --region "$AWS_REGION" --name "$BUNDLE_PARAMETER" \
    --query Parameter.Value --output text | json_field smtp_secret_arn
}

# load_smtp_credentials SECRET_ARN: sets SMTP_USER and SMTP_PASSWORD.
SMTP_USER="" SMTP_PASSWORD=""
load_smtp_credentials() {
  local json
  json=$(secret_string "$1")
  SMTP_USER=$(printf '%s' "$json" | json_field username)
  SMTP_PASSWORD=$(printf '%s' "$json" | json_field password)
  [[ -n "$SMTP_USER" && -n "$SMTP_PASSWORD" ]] ||
    die "the SMTP credentials secret has no username and password"
}

# email_gitlab_rb SENDER: the gitlab.rb lines of outbound e-mail; with no sender, e-mail off.
# SENDER is an address (sent from it) or a domain (sent from gitlab@<domain>).
email_gitlab_rb() {
  local sender=$1 from domain
  if [[ -z "$sender" ]]; then
    printf "\n# Outbound e-mail: off (the stack has no EmailSender).\ngitlab_rails['gitlab_email_enabled'] = false\n"
    return
  fi
  if [[ "$sender" == *@* ]]; then
    from=$sender
  else
    from="gitlab@$sender"
  fi
  domain=${from#*@}
  cat <<RUBY

# Outbound e-mail through Amazon SES (port 587, STARTTLS).
gitlab_rails['gitlab_email_enabled'] = true
gitlab_rails['gitlab_email_from'] = $(ruby_string "$from")
gitlab_rails['gitlab_email_reply_to'] = $(ruby_string "noreply@$domain")
gitlab_rails['smtp_enable'] = true
gitlab_rails['smtp_address'] = $(ruby_string "email-smtp.$AWS_REGION.amazonaws.com")
gitlab_rails['smtp_port'] = $SMTP_PORT
gitlab_rails['smtp_user_name'] = $(ruby_string "$SMTP_USER")
gitlab_rails['smtp_password'] = $(ruby_string "$SMTP_PASSWORD")
gitlab_rails['smtp_domain'] = $(ruby_string "$domain")
gitlab_rails['smtp_authentication'] = 'login'
gitlab_rails['smtp_enable_starttls_auto'] = true
gitlab_rails['smtp_tls'] = false
RUBY
}
